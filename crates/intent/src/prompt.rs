//! Prompt 1 (instruction, the system message) and Prompt 2 (input, the user message) of the
//! paper (section 3.2), rendered from a template file.
//!
//! The default template is `crates/intent/prompts/llm-dmsrec.txt` (embedded); its header
//! documents the placeholder syntax. A rendered prompt lists the session's items numbered from 1
//! as `n. title_id` separated by `;` and line breaks, then the candidates as `n. title`, as
//! Prompt 2 of the paper does.
//!
//! Titles are data, never markup: [`clean_title`] turns every line break, tab and other
//! Unicode whitespace control into one space and drops the remaining control characters, then
//! trims the ends. Nothing else is changed (double spaces and HTML entities stay as in the data,
//! unless [`PromptOptions::decode_html_entities`] is set), so the prompt shows the authors'
//! text. The same cleaned (and capped) titles are the [`Constraint`] choices and what
//! [`crate::parse`] matches answers against.

use crate::llm::{ChatRequest, Constraint};
use anyhow::{bail, Context, Result};
use dmsrec_data::{Catalog, Example};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The default template (the paper's Prompt 1 + Prompt 2).
pub const DEFAULT_TEMPLATE: &str = include_str!("../prompts/llm-dmsrec.txt");

/// Names of the template's sections, in file order.
const SECTIONS: [&str; 6] =
    ["system", "user", "session_item", "session_join", "candidate_item", "candidate_join"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Session,
    Candidates,
    NSession,
    NCandidates,
    N,
    Id,
    Title,
}

impl Var {
    fn name(self) -> &'static str {
        match self {
            Var::Session => "session",
            Var::Candidates => "candidates",
            Var::NSession => "n_session",
            Var::NCandidates => "n_candidates",
            Var::N => "n",
            Var::Id => "id",
            Var::Title => "title",
        }
    }
}

const MESSAGE_VARS: [Var; 4] = [Var::Session, Var::Candidates, Var::NSession, Var::NCandidates];
const ITEM_VARS: [Var; 3] = [Var::N, Var::Id, Var::Title];

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Lit(String),
    Var(Var),
}

/// A compiled text with `{placeholder}`s.
#[derive(Debug, Clone, PartialEq)]
struct Format {
    raw: String,
    pieces: Vec<Piece>,
}

impl Format {
    fn compile(raw: &str, allowed: &[Var], section: &str) -> Result<Self> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => bail!(
                                "section [[{section}]]: unclosed '{{{name}' (write {{{{ for a literal brace)"
                            ),
                        }
                    }
                    let var = allowed.iter().copied().find(|v| v.name() == name).ok_or_else(|| {
                        let names: Vec<String> =
                            allowed.iter().map(|v| format!("{{{}}}", v.name())).collect();
                        anyhow::anyhow!(
                            "section [[{section}]]: unknown placeholder {{{name}}} (allowed here: {})",
                            names.join(", ")
                        )
                    })?;
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Var(var));
                }
                '}' => bail!("section [[{section}]]: lone '}}' (write }}}} for a literal brace)"),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(Self { raw: raw.to_string(), pieces })
    }

    fn render(&self, out: &mut String, value: &dyn Fn(Var) -> String) {
        for p in &self.pieces {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Var(v) => out.push_str(&value(*v)),
            }
        }
    }
}

/// A prompt template: system and user messages plus how list items are written.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptTemplate {
    /// Where it came from (`default` or a file path), for messages.
    pub source: String,
    system: Format,
    user: Format,
    session_item: Format,
    session_join: String,
    candidate_item: Format,
    candidate_join: String,
}

fn unescape_join(raw: &str, section: &str) -> Result<String> {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('s') => out.push(' '),
            Some('\\') => out.push('\\'),
            Some(o) => bail!("section [[{section}]]: unknown escape \\{o} (use \\n, \\t, \\s or \\\\)"),
            None => bail!("section [[{section}]]: a lone backslash ends the text"),
        }
    }
    Ok(out)
}

/// Lines of a section without blank lines at its start and end, joined by `\n`.
fn section_text(lines: &[&str]) -> String {
    let start = lines.iter().position(|l| !l.trim().is_empty()).unwrap_or(lines.len());
    let end = lines.iter().rposition(|l| !l.trim().is_empty()).map_or(start, |e| e + 1);
    lines[start..end.max(start)].join("\n")
}

impl PromptTemplate {
    /// The embedded default template (the paper's prompts).
    pub fn paper() -> Self {
        Self::parse(DEFAULT_TEMPLATE, "default").expect("the embedded default template is valid")
    }

    /// Reads a template file (syntax: see the header of `prompts/llm-dmsrec.txt`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading template {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
            .with_context(|| format!("prompt template {}", path.display()))
    }

    /// Parses template text; `source` names it in messages.
    pub fn parse(text: &str, source: &str) -> Result<Self> {
        let mut bodies: [Option<Vec<&str>>; 6] = Default::default();
        let mut current: Option<usize> = None;
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.len() > 4 && t.starts_with("[[") && t.ends_with("]]") {
                let name = t[2..t.len() - 2].trim();
                let idx = SECTIONS.iter().position(|s| *s == name).ok_or_else(|| {
                    anyhow::anyhow!(
                        "line {}: unknown section [[{name}]] (known: {})",
                        i + 1,
                        SECTIONS.join(", ")
                    )
                })?;
                if bodies[idx].is_some() {
                    bail!("line {}: section [[{name}]] appears twice", i + 1);
                }
                bodies[idx] = Some(Vec::new());
                current = Some(idx);
            } else if let Some(idx) = current {
                bodies[idx].as_mut().expect("open section").push(line);
            }
        }
        let text_of = |idx: usize| bodies[idx].as_deref().map(section_text);
        let system = text_of(0).ok_or_else(|| anyhow::anyhow!("no [[system]] section"))?;
        let user = text_of(1).ok_or_else(|| anyhow::anyhow!("no [[user]] section"))?;
        let session_item = text_of(2).unwrap_or_else(|| "{n}. {title}_{id}".into());
        let session_join = match text_of(3) {
            Some(s) => unescape_join(&s, "session_join")?,
            None => ";\n".into(),
        };
        let candidate_item = text_of(4).unwrap_or_else(|| "{n}. {title}".into());
        let candidate_join = match text_of(5) {
            Some(s) => unescape_join(&s, "candidate_join")?,
            None => "\n".into(),
        };
        Ok(Self {
            source: source.to_string(),
            system: Format::compile(&system, &MESSAGE_VARS, "system")?,
            user: Format::compile(&user, &MESSAGE_VARS, "user")?,
            session_item: Format::compile(&session_item, &ITEM_VARS, "session_item")?,
            session_join,
            candidate_item: Format::compile(&candidate_item, &ITEM_VARS, "candidate_item")?,
            candidate_join,
        })
    }

    /// The system message text before rendering.
    pub fn system_text(&self) -> &str {
        &self.system.raw
    }

    /// The user message text before rendering.
    pub fn user_text(&self) -> &str {
        &self.user.raw
    }
}

/// What goes into a prompt, and the constraint attached to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PromptOptions {
    /// Candidates shown: the first `k` of each candidate row (the paper: 50).
    pub k: usize,
    /// Show only the last N clicks of the session (None: all, as the paper).
    pub last_n: Option<usize>,
    /// Cap every title at this many characters (None: no cap).
    pub title_max_chars: Option<usize>,
    /// Decode HTML entities (`&amp;`, `&egrave;`, `&#153;`) in titles; off by default, as the
    /// authors' prompts show raw titles.
    pub decode_html_entities: bool,
    /// Attach a [`Constraint`] (answers restricted to candidate titles) to every request.
    pub constrain: bool,
    /// Fewest intents a constrained answer holds.
    pub min_intents: usize,
    /// Most intents a constrained answer holds (the paper asks for "an appropriate number").
    pub max_intents: usize,
    /// Written between constrained choices; the paper's answer format is `"; "`.
    pub separator: String,
}

impl Default for PromptOptions {
    fn default() -> Self {
        Self {
            k: crate::candidates::DEFAULT_K,
            last_n: None,
            title_max_chars: None,
            decode_html_entities: false,
            constrain: true,
            min_intents: 1,
            max_intents: 5,
            separator: "; ".into(),
        }
    }
}

impl PromptOptions {
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 {
            bail!("prompt option k (candidates shown) must be at least 1");
        }
        if self.last_n == Some(0) {
            bail!("prompt option last_n must be at least 1 (or unset for the whole session)");
        }
        if self.title_max_chars == Some(0) {
            bail!("prompt option title_max_chars must be at least 1 (or unset)");
        }
        if self.min_intents == 0 || self.min_intents > self.max_intents {
            bail!("need 1 <= min_intents <= max_intents, got {}..{}", self.min_intents, self.max_intents);
        }
        if self.separator.is_empty() {
            bail!("the intent separator must not be empty");
        }
        Ok(())
    }
}

/// A title as it appears in prompts: line breaks, tabs and other whitespace controls become
/// one space, other control characters are dropped, the ends are trimmed, then the text is cut
/// to `max_chars` characters (without an ellipsis; trailing spaces of the cut are trimmed).
pub fn clean_title(raw: &str, max_chars: Option<usize>) -> String {
    let mut s = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '\n' | '\r' | '\t' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}' => s.push(' '),
            c if c.is_control() => {}
            c => s.push(c),
        }
    }
    let trimmed = s.trim();
    match max_chars {
        Some(m) if trimmed.chars().count() > m => {
            trimmed.chars().take(m).collect::<String>().trim_end().to_string()
        }
        _ => trimmed.to_string(),
    }
}

/// Stable hash of everything that determines an answer's input: SHA-256 (hex) over the system
/// message, the user message and the constraint (JSON), each length-prefixed.
pub fn prompt_hash(request: &ChatRequest) -> String {
    let mut h = Sha256::new();
    h.update(b"dmsrec-prompt-v1\0");
    let constraint = serde_json::to_string(&request.constraint).expect("constraint serializes");
    for part in [request.system.as_str(), request.user.as_str(), constraint.as_str()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// One rendered prompt with the items it shows (id, cleaned title), for parsing its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderedPrompt {
    pub request: ChatRequest,
    /// [`prompt_hash`] of `request`.
    pub hash: String,
    /// The session items shown (after `last_n`), in click order.
    pub session: Vec<(u32, String)>,
    /// The candidates shown (after `k`), best first.
    pub candidates: Vec<(u32, String)>,
}

/// Renders prompts from a template and options.
#[derive(Debug, Clone)]
pub struct PromptBuilder {
    pub template: PromptTemplate,
    pub options: PromptOptions,
}

impl PromptBuilder {
    pub fn new(template: PromptTemplate, options: PromptOptions) -> Result<Self> {
        options.validate()?;
        Ok(Self { template, options })
    }

    /// The paper's template with default options.
    pub fn paper() -> Self {
        Self { template: PromptTemplate::paper(), options: PromptOptions::default() }
    }

    /// The prompt text of an item: its prompt title (the display title when that is empty),
    /// entity-decoded if asked, cleaned and capped.
    pub fn item_text(&self, catalog: &Catalog, id: u32) -> String {
        let mut t = catalog.prompt_title(id);
        if t.is_empty() {
            t = catalog.title(id);
        }
        let t = if self.options.decode_html_entities {
            crate::parse::decode_html_entities(t)
        } else {
            t.to_string()
        };
        clean_title(&t, self.options.title_max_chars)
    }

    /// Prompt 1 + 2 for one session and its candidate row (best first).
    pub fn render(&self, catalog: &Catalog, session: &[u32], candidates: &[u32]) -> RenderedPrompt {
        let o = &self.options;
        let shown = match o.last_n {
            Some(n) if session.len() > n => &session[session.len() - n..],
            _ => session,
        };
        let session_items: Vec<(u32, String)> =
            shown.iter().map(|&id| (id, self.item_text(catalog, id))).collect();
        let cand_items: Vec<(u32, String)> =
            candidates.iter().take(o.k).map(|&id| (id, self.item_text(catalog, id))).collect();

        let list = |items: &[(u32, String)], fmt: &Format, join: &str| {
            let mut out = String::new();
            for (i, (id, title)) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(join);
                }
                fmt.render(&mut out, &|v| match v {
                    Var::N => (i + 1).to_string(),
                    Var::Id => id.to_string(),
                    Var::Title => title.clone(),
                    _ => String::new(),
                });
            }
            out
        };
        let t = &self.template;
        let session_text = list(&session_items, &t.session_item, &t.session_join);
        let cand_text = list(&cand_items, &t.candidate_item, &t.candidate_join);
        let message = |f: &Format| {
            let mut out = String::new();
            f.render(&mut out, &|v| match v {
                Var::Session => session_text.clone(),
                Var::Candidates => cand_text.clone(),
                Var::NSession => session_items.len().to_string(),
                Var::NCandidates => cand_items.len().to_string(),
                _ => String::new(),
            });
            out
        };
        let constraint = if o.constrain { self.constraint(&cand_items) } else { None };
        let request = ChatRequest { system: message(&t.system), user: message(&t.user), constraint };
        let hash = prompt_hash(&request);
        RenderedPrompt { request, hash, session: session_items, candidates: cand_items }
    }

    /// Choices: the distinct non-empty candidate titles, best first; `None` when there are none.
    fn constraint(&self, cands: &[(u32, String)]) -> Option<Constraint> {
        let mut choices: Vec<String> = Vec::new();
        for (_, t) in cands {
            if !t.is_empty() && !choices.contains(t) {
                choices.push(t.clone());
            }
        }
        if choices.is_empty() {
            return None;
        }
        let max_items = self.options.max_intents.min(choices.len());
        let min_items = self.options.min_intents.min(max_items);
        Some(Constraint { choices, min_items, max_items, separator: self.options.separator.clone() })
    }

    /// Prompts for every example with its aligned candidate row.
    pub fn render_all(
        &self,
        catalog: &Catalog,
        examples: &[Example],
        candidates: &[Vec<u32>],
    ) -> Result<Vec<RenderedPrompt>> {
        crate::candidates::check_aligned(candidates, examples)?;
        Ok(examples.iter().zip(candidates).map(|(e, c)| self.render(catalog, &e.prefix, c)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmsrec_data::ItemInfo;

    fn catalog() -> Catalog {
        Catalog::new(vec![
            ItemInfo::new("Zia Bamboo Exfoliant"),
            ItemInfo::new("Remington S1051 Hair Straightener"),
            ItemInfo::new("Olay Regenerist"),
            ItemInfo::new("Blue &amp; Pink\nBrush\t(2)\u{7}"),
        ])
    }

    #[test]
    fn default_template_renders_the_papers_prompts_exactly() {
        let b = PromptBuilder::paper();
        let p = b.render(&catalog(), &[1, 2], &[3, 1]);
        assert_eq!(
            p.request.system,
            "You are tasked with inferring the user's intents based on a sequence of items they have interacted with.\n\
             \n\
             Requirements:\n\
             1. If multiple intents are inferred, list all relevant intents that reflect the user's current preferences and separate them with semicolons.\n\
             2. The inferred intents must be selected from the Candidate item set.\n\
             3. Note that the number of recommended intents should be appropriate."
        );
        assert_eq!(
            p.request.user,
            "The order in which users click on items is as follows:\n\
             1. Zia Bamboo Exfoliant_1;\n\
             2. Remington S1051 Hair Straightener_2\n\
             Candidate item set:\n\
             1. Olay Regenerist\n\
             2. Zia Bamboo Exfoliant"
        );
        assert_eq!(
            p.request.constraint,
            Some(Constraint {
                choices: vec!["Olay Regenerist".into(), "Zia Bamboo Exfoliant".into()],
                min_items: 1,
                max_items: 2,
                separator: "; ".into(),
            })
        );
        assert_eq!(
            p.session,
            vec![(1, "Zia Bamboo Exfoliant".into()), (2, "Remington S1051 Hair Straightener".into())]
        );
        assert_eq!(p.candidates[0], (3, "Olay Regenerist".into()));
        // The paper's Prompt 1 wording, sentence by sentence.
        let paper_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/paper/LLM-DMsRec.md");
        let paper = std::fs::read_to_string(&paper_path).unwrap_or_else(|_| {
            eprintln!("SKIP (paper wording check): {} not found", paper_path.display());
            p.request.system.clone()
        });
        for s in [
            "You are tasked with inferring the user's intents based on a sequence of items they have interacted with.",
            "If multiple intents are inferred, list all relevant intents that reflect the user's current preferences and separate them with semicolons.",
            "The inferred intents must be selected from the Candidate item set.",
            "Note that the number of recommended intents should be appropriate.",
        ] {
            assert!(paper.contains(s) && p.request.system.contains(s), "{s}");
        }
    }

    #[test]
    fn renders_the_papers_beauty_example_from_the_authors_data() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/beauty-paper");
        if !dir.join("items.tsv").exists() {
            eprintln!("SKIP: {} not found", dir.display());
            return;
        }
        let catalog = dmsrec_data::tsv::read_items(&dir.join("items.tsv")).unwrap();
        let examples = dmsrec_data::tsv::read_examples(&dir.join("test.tsv")).unwrap();
        let cands = crate::candidates::read_candidates(&dir.join("test_candidates.tsv")).unwrap();
        // Test example 5 is the session of the paper's Prompt 2.
        assert_eq!(examples[4].prefix, vec![2664, 4151, 3889, 3714, 10164]);
        let p = PromptBuilder::paper().render(&catalog, &examples[4].prefix, &cands[4]);
        let expected_session = "The order in which users click on items is as follows:\n\
            1. Zia Bamboo Exfoliant, 1.6 Ounce Bottles (Pack of 12)_2664;\n\
            2. Remington S1051 Salon Quality, Professional Ceramic Hair Straightener_4151;\n\
            3. Sunburnt Therapeutic After Sun Relief, 6-Ounce Tube_3889;\n\
            4. Vaseline Men Body and Face Lotion , 20.3 Ounce Bottle (Pack of 3)_3714;\n\
            5. Cotz Pediatric Spf 40, 3.5 Ounce_10164\n\
            Candidate item set:\n\
            1. ";
        assert!(p.request.user.starts_with(expected_session), "{}", p.request.user);
        assert_eq!(p.candidates.len(), 50);
        let last_line = format!("50. {}", catalog.title(cands[4][49]));
        assert!(p.request.user.ends_with(&last_line));
        assert_eq!(p.request.constraint.as_ref().unwrap().max_items, 5);
    }

    #[test]
    fn titles_are_escaped_and_entities_decoded_only_on_request() {
        assert_eq!(clean_title("  A\nB\r\nC\tD\u{7}E\u{2028}F  ", None), "A B  C DE F");
        let b = PromptBuilder::paper();
        let p = b.render(&catalog(), &[4], &[4]);
        assert!(p.request.user.contains("1. Blue &amp; Pink Brush (2)_4\n"), "{}", p.request.user);
        assert!(!p.request.user.contains('\t') && !p.request.user.contains('\u{7}'));
        assert_eq!(p.candidates[0].1, "Blue &amp; Pink Brush (2)");
        let opts = PromptOptions { decode_html_entities: true, ..Default::default() };
        let b = PromptBuilder::new(PromptTemplate::paper(), opts).unwrap();
        assert_eq!(b.render(&catalog(), &[4], &[4]).candidates[0].1, "Blue & Pink Brush (2)");
    }

    #[test]
    fn last_n_k_and_title_cap() {
        let opts = PromptOptions {
            k: 2,
            last_n: Some(2),
            title_max_chars: Some(9),
            max_intents: 1,
            ..Default::default()
        };
        let b = PromptBuilder::new(PromptTemplate::paper(), opts).unwrap();
        let p = b.render(&catalog(), &[3, 1, 2], &[2, 3, 1]);
        assert_eq!(
            p.request.user,
            "The order in which users click on items is as follows:\n\
             1. Zia Bambo_1;\n\
             2. Remington_2\n\
             Candidate item set:\n\
             1. Remington\n\
             2. Olay Rege"
        );
        let c = p.request.constraint.unwrap();
        assert_eq!((c.min_items, c.max_items), (1, 1));
        assert_eq!(c.choices, vec!["Remington", "Olay Rege"]);
        assert_eq!(clean_title("abc ", Some(3)), "abc");
        assert_eq!(clean_title("ab cd", Some(3)), "ab");
        assert_eq!(clean_title("ééé", Some(2)), "éé");
        assert!(PromptOptions { last_n: Some(0), ..Default::default() }.validate().is_err());
        assert!(PromptOptions { min_intents: 3, max_intents: 2, ..Default::default() }.validate().is_err());
    }

    #[test]
    fn custom_template_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.txt");
        std::fs::write(
            &path,
            "my notes\n[[system]]\nPick {{one}} of {n_candidates}.\n\n[[user]]\nSession ({n_session}): {session}\nChoices: {candidates}\n\
             [[session_item]]\n{title} (#{id})\n[[session_join]]\n\\s->\\s\n[[candidate_item]]\n[{n}] {title}\n[[candidate_join]]\n,\\s\n",
        )
        .unwrap();
        let t = PromptTemplate::from_file(&path).unwrap();
        let opts = PromptOptions { constrain: false, ..Default::default() };
        let b = PromptBuilder::new(t, opts).unwrap();
        let p = b.render(&catalog(), &[1, 2], &[3, 2]);
        assert_eq!(p.request.system, "Pick {one} of 2.");
        assert_eq!(
            p.request.user,
            "Session (2): Zia Bamboo Exfoliant (#1) -> Remington S1051 Hair Straightener (#2)\n\
             Choices: [1] Olay Regenerist, [2] Remington S1051 Hair Straightener"
        );
        assert_eq!(p.request.constraint, None);

        for (bad, msg) in [
            ("[[system]]\nhi {nope}\n[[user]]\nx", "unknown placeholder {nope}"),
            ("[[system]]\nhi\n", "no [[user]] section"),
            ("[[system]]\na\n[[user]]\nb\n[[sytem]]\n", "unknown section [[sytem]]"),
            ("[[system]]\na\n[[user]]\n{title}\n", "unknown placeholder {title}"),
            ("[[system]]\na {\n[[user]]\nb", "unclosed"),
            ("[[system]]\na\n[[user]]\nb\n[[session_join]]\n\\q\n", "unknown escape"),
        ] {
            let err = format!("{:#}", PromptTemplate::parse(bad, "t").unwrap_err());
            assert!(err.contains(msg), "{err} should contain {msg}");
        }
    }

    #[test]
    fn hash_is_stable_and_covers_every_part() {
        let b = PromptBuilder::paper();
        let p = b.render(&catalog(), &[1, 2], &[3, 1]);
        assert_eq!(p.hash, prompt_hash(&p.request));
        assert_eq!(p.hash.len(), 64);
        assert_eq!(p.hash, b.render(&catalog(), &[1, 2], &[3, 1]).hash);
        let mut r = p.request.clone();
        r.system.push(' ');
        assert_ne!(prompt_hash(&r), p.hash);
        let mut r = p.request.clone();
        r.constraint.as_mut().unwrap().max_items = 1;
        assert_ne!(prompt_hash(&r), p.hash);
        let mut r = p.request.clone();
        r.constraint = None;
        assert_ne!(prompt_hash(&r), p.hash);
        // Moving text between the messages changes the hash (length-prefixed parts).
        let a = ChatRequest { system: "ab".into(), user: "c".into(), constraint: None };
        let c = ChatRequest { system: "a".into(), user: "bc".into(), constraint: None };
        assert_ne!(prompt_hash(&a), prompt_hash(&c));
        // Pinned value: a change of the hashing scheme invalidates every cache, so make it loud.
        assert_eq!(prompt_hash(&a), "4e70080099e72b85c1de0684285266c9a6b4496d9e23d0a1bdc590b1ba28c2be");
    }
}
