//! LLM answers → intents (paper section 4.2, Eq. 4–5).
//!
//! An answer is split into pieces at `;` and line breaks. A piece that `;` cut inside a
//! candidate or session title (titles such as `Cr&egrave;me` contain `;`) is joined back when
//! the joined text is a known title. Each piece is matched, in this order:
//!
//! 1. **exact**: the piece, or the piece without a leading label (`Output:`), list numbering
//!    (`1.`, `2)`, `(3)`, `- `, `* `), wrapping quotes or `**bold**`, or a trailing `_<id>`,
//!    equals a candidate title after [`normalize`] (HTML entities decoded, case folded,
//!    whitespace collapsed, typographic quotes and dashes made plain);
//! 2. **fuzzy**: otherwise the best candidate by [`similarity`] (the larger of normalized
//!    Levenshtein similarity and token Jaccard) if it reaches the threshold (default 0.85);
//! 3. **free**: otherwise the cleaned piece is kept as free text, as the authors embedded
//!    unmatched answers verbatim.
//!
//! Eq. 5: an intent is **explicit** when it is one of the session's own items — its matched id
//! is a session item, or its text equals a session title after normalization (free pieces may
//! also match a session title fuzzily; they are then written as that title) — and **latent**
//! otherwise. Intents are deduplicated by matched candidate id, else by session item, else by
//! normalized text; the first occurrence is kept.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How an intent was tied to a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchKind {
    Exact,
    Fuzzy,
    Free,
}

/// One inferred intent C_k.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    /// The text to embed: the matched candidate's title, or the cleaned piece for free intents.
    pub text: String,
    /// The piece as the model wrote it (trimmed).
    pub raw: String,
    /// The matched candidate item.
    pub item: Option<u32>,
    pub kind: MatchKind,
    /// Similarity to the matched candidate (1 for exact, 0 for free).
    pub score: f64,
    /// The session item this intent is (Eq. 5), if any.
    pub session_item: Option<u32>,
    /// Eq. 5: the intent is one of the session's own items.
    pub explicit: bool,
}

/// Matching settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ParseOptions {
    /// Lowest [`similarity`] accepted as a fuzzy match.
    pub fuzzy_threshold: f64,
    /// Keep unmatched pieces as free-text intents (the authors did).
    pub keep_free: bool,
    /// Drop free pieces longer than this many characters (explanations rather than intents).
    pub max_free_chars: Option<usize>,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self { fuzzy_threshold: 0.85, keep_free: true, max_free_chars: None }
    }
}

/// The intents of one answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParsedAnswer {
    pub intents: Vec<Intent>,
}

impl ParsedAnswer {
    pub fn explicit(&self) -> impl Iterator<Item = &Intent> {
        self.intents.iter().filter(|i| i.explicit)
    }

    pub fn latent(&self) -> impl Iterator<Item = &Intent> {
        self.intents.iter().filter(|i| !i.explicit)
    }

    /// At least one intent matched a candidate (exactly or fuzzily).
    pub fn parseable(&self) -> bool {
        self.intents.iter().any(|i| i.item.is_some())
    }
}

const ENTITIES: &[(&str, &str)] = &[
    ("amp", "&"),
    ("lt", "<"),
    ("gt", ">"),
    ("quot", "\""),
    ("apos", "'"),
    ("nbsp", " "),
    ("ensp", " "),
    ("emsp", " "),
    ("thinsp", " "),
    ("shy", ""),
    ("ndash", "–"),
    ("mdash", "—"),
    ("hellip", "…"),
    ("copy", "©"),
    ("reg", "®"),
    ("trade", "™"),
    ("deg", "°"),
    ("ordm", "º"),
    ("ordf", "ª"),
    ("frac12", "½"),
    ("frac14", "¼"),
    ("frac34", "¾"),
    ("times", "×"),
    ("middot", "·"),
    ("bull", "•"),
    ("hearts", "♥"),
    ("star", "☆"),
    ("lsquo", "‘"),
    ("rsquo", "’"),
    ("ldquo", "“"),
    ("rdquo", "”"),
    ("laquo", "«"),
    ("raquo", "»"),
    ("sup2", "²"),
    ("sup3", "³"),
    ("micro", "µ"),
    ("para", "¶"),
    ("sect", "§"),
    ("cent", "¢"),
    ("pound", "£"),
    ("euro", "€"),
    ("yen", "¥"),
    ("iexcl", "¡"),
    ("iquest", "¿"),
    ("szlig", "ß"),
    ("agrave", "à"),
    ("aacute", "á"),
    ("acirc", "â"),
    ("atilde", "ã"),
    ("auml", "ä"),
    ("aring", "å"),
    ("aelig", "æ"),
    ("ccedil", "ç"),
    ("egrave", "è"),
    ("eacute", "é"),
    ("ecirc", "ê"),
    ("euml", "ë"),
    ("igrave", "ì"),
    ("iacute", "í"),
    ("icirc", "î"),
    ("iuml", "ï"),
    ("ntilde", "ñ"),
    ("ograve", "ò"),
    ("oacute", "ó"),
    ("ocirc", "ô"),
    ("otilde", "õ"),
    ("ouml", "ö"),
    ("oslash", "ø"),
    ("ugrave", "ù"),
    ("uacute", "ú"),
    ("ucirc", "û"),
    ("uuml", "ü"),
    ("yacute", "ý"),
    ("yuml", "ÿ"),
    ("Agrave", "À"),
    ("Aacute", "Á"),
    ("Acirc", "Â"),
    ("Atilde", "Ã"),
    ("Auml", "Ä"),
    ("Aring", "Å"),
    ("AElig", "Æ"),
    ("Ccedil", "Ç"),
    ("Egrave", "È"),
    ("Eacute", "É"),
    ("Ecirc", "Ê"),
    ("Euml", "Ë"),
    ("Igrave", "Ì"),
    ("Iacute", "Í"),
    ("Icirc", "Î"),
    ("Iuml", "Ï"),
    ("Ntilde", "Ñ"),
    ("Ograve", "Ò"),
    ("Oacute", "Ó"),
    ("Ocirc", "Ô"),
    ("Otilde", "Õ"),
    ("Ouml", "Ö"),
    ("Oslash", "Ø"),
    ("Ugrave", "Ù"),
    ("Uacute", "Ú"),
    ("Ucirc", "Û"),
    ("Uuml", "Ü"),
    ("Yacute", "Ý"),
];

/// Windows-1252 meanings of numeric references 128–159 (`&#153;` is ™ in scraped HTML).
fn cp1252(n: u32) -> Option<char> {
    Some(match n {
        128 => '€',
        130 => '‚',
        131 => 'ƒ',
        132 => '„',
        133 => '…',
        134 => '†',
        135 => '‡',
        136 => 'ˆ',
        137 => '‰',
        138 => 'Š',
        139 => '‹',
        140 => 'Œ',
        142 => 'Ž',
        145 => '‘',
        146 => '’',
        147 => '“',
        148 => '”',
        149 => '•',
        150 => '–',
        151 => '—',
        152 => '˜',
        153 => '™',
        154 => 'š',
        155 => '›',
        156 => 'œ',
        158 => 'ž',
        159 => 'Ÿ',
        _ => return None,
    })
}

/// Decodes `&name;`, `&#123;` and `&#x1F;` references; unknown ones stay as written.
pub fn decode_html_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let end = tail[1..].find(';').map(|e| e + 1).filter(|&e| e <= 12);
        let decoded = end.and_then(|e| {
            let name = &tail[1..e];
            if let Some(num) = name.strip_prefix('#') {
                let n = match num.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => num.parse::<u32>().ok()?,
                };
                let c = cp1252(n).or_else(|| char::from_u32(n))?;
                Some((c.to_string(), e))
            } else {
                let v = ENTITIES.iter().find(|(k, _)| *k == name).or_else(|| {
                    let lower = name.to_ascii_lowercase();
                    ENTITIES.iter().find(|(k, _)| *k == lower)
                })?;
                Some((v.1.to_string(), e))
            }
        });
        match decoded {
            Some((text, e)) => {
                out.push_str(&text);
                rest = &tail[e + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The matching form of a text: entities decoded, lower case, typographic quotes and dashes
/// made plain, control characters as spaces, whitespace runs collapsed, ends trimmed.
pub fn normalize(s: &str) -> String {
    let decoded = decode_html_entities(s);
    let mut out = String::with_capacity(decoded.len());
    let mut space = false;
    for c in decoded.chars().flat_map(char::to_lowercase) {
        let c = match c {
            '‘' | '’' | '‚' | '′' | '`' => '\'',
            '“' | '”' | '„' | '″' => '"',
            '–' | '—' | '‐' | '‑' | '−' => '-',
            c if c.is_whitespace() || c.is_control() => ' ',
            c => c,
        };
        if c == ' ' {
            space = !out.is_empty();
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
    }
    out
}

/// Levenshtein distance over characters.
pub fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.is_empty() || b.is_empty() {
        return a.len().max(b.len());
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + (ca != cb) as usize;
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

fn tokens(s: &str) -> Vec<&str> {
    let mut t: Vec<&str> = s.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).collect();
    t.sort_unstable();
    t.dedup();
    t
}

/// Token-set Jaccard similarity (tokens: runs of letters and digits).
pub fn token_jaccard(a: &str, b: &str) -> f64 {
    let (ta, tb) = (tokens(a), tokens(b));
    if ta.is_empty() && tb.is_empty() {
        return 1.0;
    }
    let inter = ta.iter().filter(|t| tb.binary_search(t).is_ok()).count();
    inter as f64 / (ta.len() + tb.len() - inter) as f64
}

/// Similarity in [0, 1] of two *normalized* texts: the larger of `1 - lev/max_len` and the
/// token Jaccard. Levenshtein is skipped when the lengths alone rule out reaching `floor`.
fn similarity_at_least(a: &str, b: &str, floor: f64) -> f64 {
    if a == b {
        return 1.0;
    }
    let jac = token_jaccard(a, b);
    let (la, lb) = (a.chars().count(), b.chars().count());
    let max = la.max(lb);
    if max == 0 {
        return 1.0;
    }
    if (la.min(lb) as f64 / max as f64) < floor.max(jac) {
        return jac;
    }
    let lev = 1.0 - levenshtein(a, b) as f64 / max as f64;
    lev.max(jac)
}

/// Similarity in [0, 1] of two texts (both normalized first).
pub fn similarity(a: &str, b: &str) -> f64 {
    similarity_at_least(&normalize(a), &normalize(b), 0.0)
}

const LABELS: &[&str] = &["inferred intents:", "user intents:", "intents:", "intent:", "output:", "answer:"];

fn strip_label(s: &str) -> &str {
    let lower = s.to_lowercase();
    for l in LABELS {
        if lower.starts_with(l) && s.is_char_boundary(l.len()) {
            return s[l.len()..].trim_start();
        }
    }
    s
}

/// Removes list numbering (`1.`, `2)`, `(3)`, `- `, `* `, `• `) at the start.
fn strip_numbering(s: &str) -> &str {
    let s = s.trim_start();
    for bullet in ["- ", "* ", "• ", "+ "] {
        if let Some(r) = s.strip_prefix(bullet) {
            return r.trim_start();
        }
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=3).contains(&digits) {
        let r = &s[digits..];
        if let Some(r2) = r.strip_prefix('.').or_else(|| r.strip_prefix(')')) {
            // "3.5 Ounce" is a title, "1.Olay" and "1. Olay" are numbered.
            if !r2.starts_with(|c: char| c.is_ascii_digit()) {
                return r2.trim_start();
            }
        }
    }
    if let Some(r) = s.strip_prefix('(') {
        let d = r.bytes().take_while(u8::is_ascii_digit).count();
        if (1..=3).contains(&d) && r[d..].starts_with(')') {
            return r[d + 1..].trim_start();
        }
    }
    s
}

/// Removes wrapping quotes, backticks and `**` / `*` emphasis.
fn strip_wrapping(mut s: &str) -> &str {
    loop {
        let t = s.trim();
        let mut stripped = None;
        for (open, close) in
            [("**", "**"), ("*", "*"), ("\"", "\""), ("'", "'"), ("`", "`"), ("“", "”"), ("‘", "’")]
        {
            if t.len() > open.len() + close.len() && t.starts_with(open) && t.ends_with(close) {
                stripped = Some(&t[open.len()..t.len() - close.len()]);
                break;
            }
        }
        match stripped {
            Some(r) => s = r,
            None => return t,
        }
    }
}

/// Splits a trailing `_<id>` (the session item format of Prompt 2) off.
fn strip_id_suffix(s: &str) -> (&str, Option<u32>) {
    let t = s.trim_end().trim_end_matches([';', '.', ',']);
    if let Some(pos) = t.rfind('_') {
        let digits = &t[pos + 1..];
        if !digits.is_empty() && digits.len() <= 9 && digits.bytes().all(|b| b.is_ascii_digit()) {
            let head = t[..pos].trim_end();
            if !head.is_empty() {
                return (head, digits.parse().ok());
            }
        }
    }
    (s, None)
}

/// The cleaned forms of a piece, least changed first, and the `_id` suffix if any.
fn variants(piece: &str) -> (Vec<&str>, Option<u32>) {
    let v0 = piece.trim();
    let v1 = strip_label(v0);
    let v2 = strip_numbering(v1);
    let v3 = strip_wrapping(v2);
    let (v4, id) = strip_id_suffix(v3);
    let v5 = strip_wrapping(v4);
    let mut out: Vec<&str> = Vec::with_capacity(6);
    for v in [v0, v1, v2, v3, v4, v5] {
        if !v.is_empty() && !out.contains(&v) {
            out.push(v);
        }
    }
    (out, id)
}

struct Known<'a> {
    id: u32,
    title: &'a str,
    norm: String,
}

/// Candidate and session titles prepared for matching many answers of one prompt.
pub struct Matcher<'a> {
    candidates: Vec<Known<'a>>,
    session: Vec<Known<'a>>,
    by_norm: HashMap<String, Vec<usize>>,
    session_by_norm: HashMap<String, usize>,
    options: ParseOptions,
}

impl<'a> Matcher<'a> {
    /// `candidates`: (item id, title as shown), best first; `session`: the session's items.
    pub fn new(candidates: &'a [(u32, String)], session: &'a [(u32, String)], options: ParseOptions) -> Self {
        let known = |items: &'a [(u32, String)]| -> Vec<Known<'a>> {
            items.iter().map(|(id, t)| Known { id: *id, title: t.as_str(), norm: normalize(t) }).collect()
        };
        let candidates = known(candidates);
        let session = known(session);
        let mut by_norm: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, c) in candidates.iter().enumerate() {
            if !c.norm.is_empty() {
                by_norm.entry(c.norm.clone()).or_default().push(i);
            }
        }
        let mut session_by_norm = HashMap::new();
        for (i, s) in session.iter().enumerate() {
            if !s.norm.is_empty() {
                session_by_norm.entry(s.norm.clone()).or_insert(i);
            }
        }
        Self { candidates, session, by_norm, session_by_norm, options }
    }

    /// Exact candidate for a piece: (candidate index, the session index when it is a session title).
    fn exact(&self, piece: &str) -> Option<(Option<usize>, Option<usize>)> {
        let (vars, suffix) = variants(piece);
        for v in vars {
            let n = normalize(v);
            if let Some(idx) = self.by_norm.get(&n) {
                let pick =
                    idx.iter().copied().find(|&i| Some(self.candidates[i].id) == suffix).unwrap_or(idx[0]);
                return Some((Some(pick), None));
            }
            if let Some(&s) = self.session_by_norm.get(&n) {
                return Some((None, Some(s)));
            }
        }
        None
    }

    fn session_index_of(&self, id: Option<u32>, norm: &str) -> Option<usize> {
        id.and_then(|id| self.session.iter().position(|s| s.id == id))
            .or_else(|| self.session_by_norm.get(norm).copied())
    }

    fn intent(&self, piece: &str) -> Option<Intent> {
        let raw = piece.trim().to_string();
        let (vars, _) = variants(piece);
        let cleaned = *vars.last()?;
        let threshold = self.options.fuzzy_threshold;
        let (item, kind, score, text) = match self.exact(piece) {
            Some((Some(ci), _)) => {
                let c = &self.candidates[ci];
                (Some(c.id), MatchKind::Exact, 1.0, c.title.to_string())
            }
            Some((None, Some(si))) => (None, MatchKind::Free, 0.0, self.session[si].title.to_string()),
            _ => {
                let n = normalize(cleaned);
                let mut best: Option<(usize, f64)> = None;
                for (i, c) in self.candidates.iter().enumerate() {
                    if c.norm.is_empty() {
                        continue;
                    }
                    let s = similarity_at_least(&n, &c.norm, threshold);
                    if s >= threshold && best.is_none_or(|(_, b)| s > b) {
                        best = Some((i, s));
                    }
                }
                match best {
                    Some((i, s)) => {
                        let c = &self.candidates[i];
                        (Some(c.id), MatchKind::Fuzzy, s, c.title.to_string())
                    }
                    None => {
                        if !self.options.keep_free
                            || self.options.max_free_chars.is_some_and(|m| cleaned.chars().count() > m)
                        {
                            return None;
                        }
                        (None, MatchKind::Free, 0.0, cleaned.to_string())
                    }
                }
            }
        };
        let norm = normalize(&text);
        let mut session_idx = self.session_index_of(item, &norm);
        if session_idx.is_none() && item.is_none() {
            // A free piece that is a near-copy of a session title is still that item (Eq. 5).
            session_idx = self
                .session
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.norm.is_empty())
                .map(|(i, s)| (i, similarity_at_least(&norm, &s.norm, threshold)))
                .filter(|&(_, s)| s >= threshold)
                .fold(None, |acc: Option<(usize, f64)>, (i, s)| match acc {
                    Some((_, b)) if b >= s => acc,
                    _ => Some((i, s)),
                })
                .map(|(i, _)| i);
        }
        let session_item = session_idx.map(|i| self.session[i].id);
        // A free intent that is a session item is written as that item's title.
        let text = match (item, session_idx) {
            (None, Some(i)) => self.session[i].title.to_string(),
            _ => text,
        };
        Some(Intent { text, raw, item, kind, score, session_item, explicit: session_item.is_some() })
    }

    /// Splits one line at `;`, joining back pieces that form a known title.
    fn pieces<'s>(&self, line: &'s str) -> Vec<std::borrow::Cow<'s, str>> {
        let segs: Vec<&str> = line.split(';').collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < segs.len() {
            let mut taken = 1;
            for j in (i + 1..segs.len().min(i + 8)).rev() {
                let joined = segs[i..=j].join(";");
                if self.exact(&joined).is_some() {
                    out.push(std::borrow::Cow::Owned(joined));
                    taken = j - i + 1;
                    break;
                }
            }
            if taken == 1 {
                out.push(std::borrow::Cow::Borrowed(segs[i]));
            }
            i += taken;
        }
        out
    }

    /// Parses one answer.
    pub fn parse(&self, answer: &str) -> ParsedAnswer {
        let mut intents: Vec<Intent> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for line in answer.lines() {
            for piece in self.pieces(line) {
                if piece.trim().is_empty() {
                    continue;
                }
                let Some(intent) = self.intent(&piece) else { continue };
                let key = match (intent.item, intent.session_item) {
                    (Some(id), _) => format!("#{id}"),
                    (None, Some(id)) => format!("s#{id}"),
                    (None, None) => normalize(&intent.text),
                };
                if key.is_empty() || seen.contains(&key) {
                    continue;
                }
                seen.push(key);
                intents.push(intent);
            }
        }
        ParsedAnswer { intents }
    }
}

/// Parses one answer against the prompt's candidates and the session's items.
pub fn parse_answer(
    answer: &str,
    candidates: &[(u32, String)],
    session: &[(u32, String)],
    options: &ParseOptions,
) -> ParsedAnswer {
    Matcher::new(candidates, session, options.clone()).parse(answer)
}

/// Counts over many parsed answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParseStats {
    pub answers: usize,
    /// Answers with at least one intent matched to a candidate.
    pub parseable: usize,
    /// Answers without any intent.
    pub empty: usize,
    pub intents: usize,
    pub exact: usize,
    pub fuzzy: usize,
    pub free: usize,
    pub explicit: usize,
    pub latent: usize,
    /// Answers with at least one explicit / latent intent.
    pub with_explicit: usize,
    pub with_latent: usize,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl ParseStats {
    pub fn add(&mut self, p: &ParsedAnswer) {
        self.answers += 1;
        self.parseable += p.parseable() as usize;
        self.empty += p.intents.is_empty() as usize;
        self.intents += p.intents.len();
        for i in &p.intents {
            match i.kind {
                MatchKind::Exact => self.exact += 1,
                MatchKind::Fuzzy => self.fuzzy += 1,
                MatchKind::Free => self.free += 1,
            }
            if i.explicit {
                self.explicit += 1;
            } else {
                self.latent += 1;
            }
        }
        self.with_explicit += p.intents.iter().any(|i| i.explicit) as usize;
        self.with_latent += p.intents.iter().any(|i| !i.explicit) as usize;
    }

    pub fn from_answers<'a>(answers: impl IntoIterator<Item = &'a ParsedAnswer>) -> Self {
        let mut s = Self::default();
        for a in answers {
            s.add(a);
        }
        s
    }

    /// Share of answers with at least one candidate-matched intent.
    pub fn parseable_rate(&self) -> f64 {
        ratio(self.parseable, self.answers)
    }
    /// Shares of intents by match kind.
    pub fn exact_rate(&self) -> f64 {
        ratio(self.exact, self.intents)
    }
    pub fn fuzzy_rate(&self) -> f64 {
        ratio(self.fuzzy, self.intents)
    }
    pub fn free_rate(&self) -> f64 {
        ratio(self.free, self.intents)
    }
    /// Share of intents that are explicit (Eq. 5; the paper's Fig. 3 shows this split).
    pub fn explicit_share(&self) -> f64 {
        ratio(self.explicit, self.intents)
    }
    pub fn mean_intents_per_answer(&self) -> f64 {
        ratio(self.intents, self.answers)
    }

    /// One line for logs.
    pub fn summary(&self) -> String {
        format!(
            "{} answers ({:.1}% parseable, {} empty), {} intents ({:.2}/answer): exact {:.1}%, fuzzy {:.1}%, free {:.1}%; explicit {:.1}%",
            self.answers,
            100.0 * self.parseable_rate(),
            self.empty,
            self.intents,
            self.mean_intents_per_answer(),
            100.0 * self.exact_rate(),
            100.0 * self.fuzzy_rate(),
            100.0 * self.free_rate(),
            100.0 * self.explicit_share(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(v: &[(u32, &str)]) -> Vec<(u32, String)> {
        v.iter().map(|(i, t)| (*i, t.to_string())).collect()
    }

    fn cands() -> Vec<(u32, String)> {
        items(&[
            (10, "Olay Regenerist 14-Day Skin Intervention"),
            (11, "MoroccanOil Hydrating Styling Cream, 10.2-Ounce Bottle"),
            (12, "Blue &amp; Pink Brush"),
            (13, "derma e Hyaluronic Acid Day Cr&egrave;me, 2-Ounces"),
            (14, "Jane Carter Solution Wrap and Roll, 8 Oz."),
            (2, "Zia Bamboo Exfoliant"),
        ])
    }

    fn session() -> Vec<(u32, String)> {
        items(&[(1, "Cotz Pediatric SPF 40"), (2, "Zia Bamboo Exfoliant")])
    }

    fn parse(a: &str) -> ParsedAnswer {
        parse_answer(a, &cands(), &session(), &ParseOptions::default())
    }

    fn ids(p: &ParsedAnswer) -> Vec<Option<u32>> {
        p.intents.iter().map(|i| i.item).collect()
    }

    #[test]
    fn splits_on_semicolons_and_newlines_and_trims() {
        let p = parse("  Olay Regenerist 14-Day Skin Intervention ;MoroccanOil Hydrating Styling Cream, 10.2-Ounce Bottle\nBlue &amp; Pink Brush;  ; ");
        assert_eq!(ids(&p), vec![Some(10), Some(11), Some(12)]);
        assert!(p.intents.iter().all(|i| i.kind == MatchKind::Exact && i.score == 1.0));
        assert_eq!(p.intents[0].text, "Olay Regenerist 14-Day Skin Intervention");
    }

    #[test]
    fn strips_numbering_labels_quotes_and_id_suffixes() {
        let p = parse("Output: 1. Olay Regenerist 14-Day Skin Intervention\n2) \"Blue &amp; Pink Brush\"\n- **Zia Bamboo Exfoliant_2**\n(4) Jane Carter Solution Wrap and Roll, 8 Oz._14;");
        assert_eq!(ids(&p), vec![Some(10), Some(12), Some(2), Some(14)]);
        assert!(p.intents.iter().all(|i| i.kind == MatchKind::Exact), "{p:?}");
        // "3.5" is not numbering.
        assert_eq!(strip_numbering("3.5 Ounce"), "3.5 Ounce");
        assert_eq!(strip_numbering("1.Olay"), "Olay");
        assert_eq!(strip_id_suffix("Zia_2664"), ("Zia", Some(2664)));
        assert_eq!(strip_id_suffix("_2664"), ("_2664", None));
    }

    #[test]
    fn normalization_case_whitespace_entities() {
        let p = parse("olay   REGENERIST 14-day skin\tintervention; Blue & Pink Brush; derma e Hyaluronic Acid Day Crème, 2-Ounces");
        assert_eq!(ids(&p), vec![Some(10), Some(12), Some(13)]);
        assert!(p.intents.iter().all(|i| i.kind == MatchKind::Exact), "{p:?}");
        assert_eq!(normalize("  A&amp;B\u{a0} “C” – D&#153; "), "a&b \"c\" - d™");
        assert_eq!(decode_html_entities("x &unknown; & y &#x41;&Eacute;"), "x &unknown; & y AÉ");
    }

    #[test]
    fn semicolons_inside_titles_are_joined_back() {
        let p = parse("derma e Hyaluronic Acid Day Cr&egrave;me, 2-Ounces; Zia Bamboo Exfoliant");
        assert_eq!(ids(&p), vec![Some(13), Some(2)]);
    }

    #[test]
    fn fuzzy_above_threshold_else_free_text() {
        let p = parse("Jane Carter Solution Wrap and Roll, 8 Oz; MoroccanOil Hydrating Styling Creme, 10.2 Ounce Bottle; Olay");
        assert_eq!(ids(&p), vec![Some(14), Some(11), None]);
        assert_eq!(p.intents[0].kind, MatchKind::Fuzzy);
        // Same tokens, different punctuation: token Jaccard 1, still a fuzzy (not exact) match.
        assert_eq!(p.intents[0].score, 1.0);
        assert!(p.intents[1].score >= 0.85 && p.intents[1].score < 1.0);
        assert_eq!(p.intents[0].text, "Jane Carter Solution Wrap and Roll, 8 Oz.");
        assert_eq!(p.intents[1].kind, MatchKind::Fuzzy);
        assert_eq!((p.intents[2].kind, p.intents[2].text.as_str()), (MatchKind::Free, "Olay"));
        assert!(p.parseable());
        // A stricter threshold turns fuzzy matches into free text.
        let strict = ParseOptions { fuzzy_threshold: 0.999, ..Default::default() };
        let p = parse_answer(
            "MoroccanOil Hydrating Styling Creme, 10.2 Ounce Bottle",
            &cands(),
            &session(),
            &strict,
        );
        assert_eq!(p.intents[0].kind, MatchKind::Free);
        assert!(!p.parseable());
        let no_free = ParseOptions { keep_free: false, ..Default::default() };
        assert!(parse_answer("something else", &cands(), &session(), &no_free).intents.is_empty());
        let short = ParseOptions { max_free_chars: Some(5), ..Default::default() };
        assert!(parse_answer("a long explanation", &cands(), &session(), &short).intents.is_empty());
        assert!((similarity("Toy Story", "Toy Story 2") - 9.0 / 11.0).abs() < 1e-9);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert!((token_jaccard("a b c", "c b d") - 0.5).abs() < 1e-9);
    }

    #[test]
    fn explicit_by_id_or_session_title_else_latent() {
        let p = parse("Zia Bamboo Exfoliant; Olay Regenerist 14-Day Skin Intervention; cotz pediatric spf 40; Cotz Pediatric SPF-40.");
        // Matched candidate that is a session item (by id).
        assert_eq!(
            (p.intents[0].item, p.intents[0].explicit, p.intents[0].session_item),
            (Some(2), true, Some(2))
        );
        // A candidate that is not in the session: latent.
        assert!(!p.intents[1].explicit);
        // A session title that is not a candidate: explicit free text, with the session's spelling.
        assert_eq!(
            (p.intents[2].item, p.intents[2].explicit, p.intents[2].session_item),
            (None, true, Some(1))
        );
        assert_eq!(p.intents[2].text, "Cotz Pediatric SPF 40");
        // A near-copy of a session title: explicit, fuzzily.
        assert_eq!(p.intents.len(), 3, "near-copy of item 1 deduplicated: {p:?}");
        assert_eq!(p.explicit().count(), 2);
        assert_eq!(p.latent().count(), 1);
        // Explicit by title when the ids differ (duplicate titles under two ids).
        let c = items(&[(7, "Zia Bamboo Exfoliant")]);
        let p = parse_answer("Zia Bamboo Exfoliant", &c, &session(), &ParseOptions::default());
        assert_eq!((p.intents[0].item, p.intents[0].session_item), (Some(7), Some(2)));
    }

    #[test]
    fn deduplicates_and_prefers_the_suffix_id_among_duplicate_titles() {
        let p = parse("Zia Bamboo Exfoliant; zia bamboo exfoliant; Olay; olay");
        assert_eq!(ids(&p), vec![Some(2), None]);
        let c = items(&[(5, "Same"), (6, "Same")]);
        let p = parse_answer("Same_6; Same", &c, &[], &ParseOptions::default());
        assert_eq!(ids(&p), vec![Some(6), Some(5)]);
    }

    #[test]
    fn stats_over_answers() {
        let answers = [
            parse("Zia Bamboo Exfoliant; Olay Regenerist 14-Day Skin Intervention"),
            parse("Jane Carter Solution Wrap and Roll, 8 Oz; something new"),
            parse(""),
            parse("nothing known"),
        ];
        let s = ParseStats::from_answers(&answers);
        assert_eq!(
            s,
            ParseStats {
                answers: 4,
                parseable: 2,
                empty: 1,
                intents: 5,
                exact: 2,
                fuzzy: 1,
                free: 2,
                explicit: 1,
                latent: 4,
                with_explicit: 1,
                with_latent: 3,
            }
        );
        assert!((s.parseable_rate() - 0.5).abs() < 1e-12);
        assert!((s.explicit_share() - 0.2).abs() < 1e-12);
        assert!((s.mean_intents_per_answer() - 1.25).abs() < 1e-12);
        assert!((s.exact_rate() + s.fuzzy_rate() + s.free_rate() - 1.0).abs() < 1e-12);
        assert!(s.summary().contains("4 answers"));
        assert_eq!(ParseStats::default().explicit_share(), 0.0);
    }
}
