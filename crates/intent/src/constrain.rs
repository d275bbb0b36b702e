//! Constrained (guided) decoding: the answer can only be `choice<sep>choice<sep>…` where every
//! choice is one of a prompt's candidate titles, no title twice, between `min_items` and
//! `max_items` of them, then the end token.
//!
//! # Working at the token level
//!
//! Byte-level BPE does not tokenize `"; Title"` as the concatenation of the tokenizations of
//! `";"`, `" "` and `"Title"`, and a title tokenizes differently at the start of the answer
//! (no leading space) than after the separator. The grammar therefore holds two token tries:
//!
//! * `first`: each choice tokenized on its own, as the answer's first item (right after
//!   `<|im_start|>assistant\n`);
//! * `next`: each choice tokenized *together with the separator in front* (`"; Title"` as one
//!   string), so the separator's tokens and the title's first token are exactly what the
//!   tokenizer produces for that text. For the GPT-2/SmolLM/Qwen pre-tokenizers this is `";"`
//!   followed by the tokens of `" Title"`, so all entries share the `";"` edge.
//!
//! The produced token sequence always decodes to `A; B; C`. It is the canonical tokenization of
//! that text except in rare cases where a title's last character and the separator would form one
//! pre-token (a title ending in punctuation): the text is still right, the model just sees a
//! slightly unusual split.
//!
//! A decoding state is a small set of branches (trie, node, chosen titles): a title that is a
//! token-prefix of another (`Alien` / `Aliens: Special Edition`) keeps both readings alive until
//! the next token decides. A branch only follows edges whose subtree still holds an unchosen
//! title, so no title is repeated. At a complete title the answer may go on with the separator
//! (while fewer than `max_items` titles are complete and another title is left) or end (once at
//! least `min_items` are complete).
//!
//! When exactly one token is allowed the decoder appends it without sampling and keeps going;
//! the run of forced tokens is then fed to the model in one multi-token forward pass.
//!
//! If `max_new_tokens` is reached inside the answer, the grammar switches to finishing mode: no
//! further separator, the end token allowed at any complete title, so the answer still parses
//! (the current title is completed, which may exceed the budget by at most its length).

use crate::llm::{Constraint, GenerationSettings};
use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, Default)]
struct TrieNode {
    /// (token, child node), in insertion order.
    children: Vec<(u32, usize)>,
    /// The choice whose tokens end here.
    terminal: Option<usize>,
    /// Every choice in this node's subtree (itself included).
    choices: Vec<usize>,
}

/// A trie over token sequences; node 0 is the root.
#[derive(Debug, Clone)]
pub struct TokenTrie {
    nodes: Vec<TrieNode>,
}

impl Default for TokenTrie {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenTrie {
    pub fn new() -> Self {
        TokenTrie { nodes: vec![TrieNode::default()] }
    }

    pub fn insert(&mut self, tokens: &[u32], choice: usize) {
        let mut node = 0;
        self.nodes[0].choices.push(choice);
        for &t in tokens {
            node = match self.child(node, t) {
                Some(c) => c,
                None => {
                    let c = self.nodes.len();
                    self.nodes.push(TrieNode::default());
                    self.nodes[node].children.push((t, c));
                    c
                }
            };
            self.nodes[node].choices.push(choice);
        }
        self.nodes[node].terminal.get_or_insert(choice);
    }

    pub fn child(&self, node: usize, token: u32) -> Option<usize> {
        self.nodes[node].children.iter().find(|(t, _)| *t == token).map(|&(_, c)| c)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }
}

/// A [`Constraint`] compiled against a tokenizer.
#[derive(Debug, Clone)]
pub struct ChoiceGrammar {
    /// The distinct, non-empty choices, in their original order.
    pub choices: Vec<String>,
    first: TokenTrie,
    next: TokenTrie,
    min_items: usize,
    max_items: usize,
    end_token: u32,
}

impl ChoiceGrammar {
    /// `encode` must tokenize text exactly as the prompt's text is tokenized (no BOS, no special
    /// post-processing). `end_token` closes the answer (`<|im_end|>` for ChatML models).
    ///
    /// Choices are trimmed and deduplicated; empty ones are dropped. `max_items` is clamped to
    /// `1..=number of choices` and `min_items` to `1..=max_items`: the answer always names at
    /// least one title.
    pub fn new(
        c: &Constraint,
        mut encode: impl FnMut(&str) -> Result<Vec<u32>>,
        end_token: u32,
    ) -> Result<Self> {
        let mut choices: Vec<String> = Vec::new();
        for ch in &c.choices {
            let t = ch.trim();
            if !t.is_empty() && !choices.iter().any(|x| x == t) {
                choices.push(t.to_string());
            }
        }
        if choices.is_empty() {
            bail!("constraint has no non-empty choice");
        }
        let mut first = TokenTrie::new();
        let mut next = TokenTrie::new();
        for (i, ch) in choices.iter().enumerate() {
            let a = encode(ch)?;
            let b = encode(&format!("{}{}", c.separator, ch))?;
            if a.is_empty() || b.is_empty() {
                bail!("choice {ch:?} tokenizes to nothing");
            }
            if a.contains(&end_token) || b.contains(&end_token) {
                bail!("choice {ch:?} contains the end token");
            }
            first.insert(&a, i);
            next.insert(&b, i);
        }
        let max_items = c.max_items.clamp(1, choices.len());
        let min_items = c.min_items.clamp(1, max_items);
        Ok(ChoiceGrammar { choices, first, next, min_items, max_items, end_token })
    }

    /// Builds the grammar directly from token sequences: `first[i]` is choice i as the first item,
    /// `next[i]` is separator + choice i. For tests and for callers with their own tokenization.
    pub fn from_tokens(
        choices: Vec<String>,
        first_tokens: &[Vec<u32>],
        next_tokens: &[Vec<u32>],
        min_items: usize,
        max_items: usize,
        end_token: u32,
    ) -> Result<Self> {
        if choices.is_empty() || choices.len() != first_tokens.len() || choices.len() != next_tokens.len() {
            bail!("from_tokens: choices and token lists must be non-empty and of equal length");
        }
        let mut first = TokenTrie::new();
        let mut next = TokenTrie::new();
        for i in 0..choices.len() {
            if first_tokens[i].is_empty() || next_tokens[i].is_empty() {
                bail!("from_tokens: choice {i} has no tokens");
            }
            first.insert(&first_tokens[i], i);
            next.insert(&next_tokens[i], i);
        }
        let max_items = max_items.clamp(1, choices.len());
        let min_items = min_items.clamp(1, max_items);
        Ok(ChoiceGrammar { choices, first, next, min_items, max_items, end_token })
    }

    pub fn min_items(&self) -> usize {
        self.min_items
    }

    pub fn max_items(&self) -> usize {
        self.max_items
    }

    pub fn end_token(&self) -> u32 {
        self.end_token
    }

    pub fn start(&self) -> ChoiceState<'_> {
        ChoiceState {
            g: self,
            branches: vec![Branch {
                in_next: false,
                node: 0,
                chosen: vec![false; self.choices.len()],
                count: 0,
            }],
            done: None,
            finishing: false,
        }
    }

    fn trie(&self, in_next: bool) -> &TokenTrie {
        if in_next {
            &self.next
        } else {
            &self.first
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Branch {
    in_next: bool,
    node: usize,
    /// Titles already completed (the one being written is not in here yet).
    chosen: Vec<bool>,
    count: usize,
}

/// Where decoding stands in a [`ChoiceGrammar`].
#[derive(Debug, Clone)]
pub struct ChoiceState<'a> {
    g: &'a ChoiceGrammar,
    branches: Vec<Branch>,
    /// Indices of the chosen titles (sorted by index) once the end token was taken.
    done: Option<Vec<usize>>,
    finishing: bool,
}

/// What a branch may do next.
struct Moves {
    /// (token, trie, node) continuations inside a title or into the separator + next title.
    edges: Vec<(u32, bool, usize, Option<usize>)>,
    end: bool,
}

impl<'a> ChoiceState<'a> {
    pub fn is_done(&self) -> bool {
        self.done.is_some()
    }

    /// The chosen titles' indices once done.
    pub fn chosen(&self) -> Option<&[usize]> {
        self.done.as_deref()
    }

    /// Stops allowing separators and allows the end token at any complete title.
    pub fn finish(&mut self) {
        self.finishing = true;
    }

    pub fn is_finishing(&self) -> bool {
        self.finishing
    }

    fn moves(&self, b: &Branch) -> Moves {
        let g = self.g;
        let trie = g.trie(b.in_next);
        let node = &trie.nodes[b.node];
        let open = |choices: &[usize], also_chosen: Option<usize>| {
            choices.iter().any(|&c| !b.chosen[c] && Some(c) != also_chosen)
        };
        let mut edges = Vec::new();
        for &(t, child) in &node.children {
            if open(&trie.nodes[child].choices, None) {
                edges.push((t, b.in_next, child, None));
            }
        }
        let mut end = false;
        if let Some(c) = node.terminal {
            if !b.chosen[c] {
                let n = b.count + 1;
                let others_left = b.chosen.iter().enumerate().any(|(i, &ch)| !ch && i != c);
                if !self.finishing && n < g.max_items && others_left {
                    for &(t, child) in &g.next.nodes[0].children {
                        if open(&g.next.nodes[child].choices, Some(c)) {
                            edges.push((t, true, child, Some(c)));
                        }
                    }
                }
                end = n >= g.min_items || self.finishing || !others_left;
            }
        }
        Moves { edges, end }
    }

    /// The tokens allowed next, sorted, without duplicates; empty once done.
    pub fn allowed(&self) -> Vec<u32> {
        if self.done.is_some() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for b in &self.branches {
            let m = self.moves(b);
            out.extend(m.edges.iter().map(|e| e.0));
            if m.end {
                out.push(self.g.end_token);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The only allowed token, if there is exactly one.
    pub fn forced(&self) -> Option<u32> {
        let a = self.allowed();
        if a.len() == 1 {
            Some(a[0])
        } else {
            None
        }
    }

    /// Takes `token`; an error if the grammar does not allow it.
    pub fn advance(&mut self, token: u32) -> Result<()> {
        if self.done.is_some() {
            bail!("constrained answer already ended");
        }
        let mut next: Vec<Branch> = Vec::new();
        for b in &self.branches {
            let m = self.moves(b);
            if m.end && token == self.g.end_token {
                let trie = self.g.trie(b.in_next);
                let last = trie.nodes[b.node].terminal.expect("end only at a terminal");
                let mut chosen = b.chosen.clone();
                chosen[last] = true;
                self.done = Some(chosen.iter().enumerate().filter(|(_, &c)| c).map(|(i, _)| i).collect());
                self.branches.clear();
                return Ok(());
            }
            for &(t, in_next, node, completes) in &m.edges {
                if t != token {
                    continue;
                }
                let mut nb = Branch { in_next, node, chosen: b.chosen.clone(), count: b.count };
                if let Some(c) = completes {
                    nb.chosen[c] = true;
                    nb.count += 1;
                }
                if !next.contains(&nb) {
                    next.push(nb);
                }
            }
        }
        if next.is_empty() {
            bail!("token {token} is not allowed by the constraint");
        }
        self.branches = next;
        Ok(())
    }
}

/// Picks a token from `logits`: the highest (lowest id on ties) when `temperature <= 0`,
/// otherwise a sample from softmax(logits / temperature). With `allowed`, only those tokens are
/// considered (ids beyond the logits count as -inf).
pub fn pick_token(logits: &[f32], allowed: Option<&[u32]>, temperature: f64, rng: &mut impl Rng) -> u32 {
    let get = |t: u32| -> f32 {
        match logits.get(t as usize) {
            Some(&v) if !v.is_nan() => v,
            _ => f32::NEG_INFINITY,
        }
    };
    let ids: Vec<u32> = match allowed {
        Some(a) => a.to_vec(),
        None => (0..logits.len() as u32).collect(),
    };
    if ids.is_empty() {
        return 0;
    }
    let mut best = ids[0];
    let mut best_v = get(best);
    for &t in &ids[1..] {
        let v = get(t);
        if v > best_v || (v == best_v && t < best) {
            best = t;
            best_v = v;
        }
    }
    if temperature <= 0.0 || best_v == f32::NEG_INFINITY {
        return best;
    }
    let inv_t = 1.0 / temperature;
    let weights: Vec<f64> = ids.iter().map(|&t| (((get(t) - best_v) as f64) * inv_t).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut r = rng.gen::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        r -= w;
        if r <= 0.0 && *w > 0.0 {
            return ids[i];
        }
    }
    best
}

/// Why decoding stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A stop token (unconstrained) or the grammar's end token.
    EndToken,
    /// `max_new_tokens` reached (unconstrained only; a constrained answer always ends cleanly).
    MaxTokens,
}

#[derive(Debug, Clone)]
pub struct DecodeOutcome {
    /// Generated tokens, without the final stop/end token.
    pub tokens: Vec<u32>,
    pub stop: StopReason,
    /// Tokens appended without sampling because the grammar allowed only one.
    pub forced_tokens: usize,
    /// Forward passes run during decoding, and the tokens they processed.
    pub forward_calls: usize,
    pub forward_tokens: usize,
    /// Indices (into the grammar's choices) of the chosen titles, sorted by index.
    pub chosen: Option<Vec<usize>>,
}

/// One answer's decoding, step by step, so that several answers can share forward passes
/// (batched decoding): [`Decoder::step`] takes the logits after the tokens fed so far and
/// returns the tokens to feed next, or `None` when the answer is complete.
/// Without a grammar it stops at any of `stop_tokens` or after `max_new_tokens`; with one it
/// follows the grammar to its end token. Sampling uses `settings.temperature` and a ChaCha8 RNG
/// seeded with `settings.seed` (one RNG per answer, so answers do not depend on batching).
pub struct Decoder<'g> {
    rng: ChaCha8Rng,
    state: Option<ChoiceState<'g>>,
    stop_tokens: &'g [u32],
    temperature: f64,
    max_new: usize,
    out: Vec<u32>,
    stop: Option<StopReason>,
    forced_tokens: usize,
    forward_calls: usize,
    forward_tokens: usize,
}

impl<'g> Decoder<'g> {
    pub fn new(
        grammar: Option<&'g ChoiceGrammar>,
        stop_tokens: &'g [u32],
        settings: &GenerationSettings,
    ) -> Self {
        Decoder {
            rng: ChaCha8Rng::seed_from_u64(settings.seed),
            state: grammar.map(|g| g.start()),
            stop_tokens,
            temperature: settings.temperature,
            max_new: settings.max_new_tokens,
            out: Vec::new(),
            stop: None,
            forced_tokens: 0,
            forward_calls: 0,
            forward_tokens: 0,
        }
    }

    /// Picks the next token from `logits` (plus every token the grammar then forces) and returns
    /// them, to be fed to the model before the next call; `None` once the answer is complete.
    pub fn step(&mut self, logits: &[f32]) -> Result<Option<Vec<u32>>> {
        if self.stop.is_some() {
            return Ok(None);
        }
        let tok = match self.state.as_mut() {
            Some(st) => {
                if self.out.len() >= self.max_new && !st.is_finishing() {
                    st.finish();
                }
                if self.out.len() > self.max_new + 512 {
                    bail!("constrained decoding did not end within {} tokens", self.max_new + 512);
                }
                let allowed = st.allowed();
                if allowed.is_empty() {
                    bail!("constraint allows no token");
                }
                pick_token(logits, Some(&allowed), self.temperature, &mut self.rng)
            }
            None => {
                if self.out.len() >= self.max_new {
                    self.stop = Some(StopReason::MaxTokens);
                    return Ok(None);
                }
                pick_token(logits, None, self.temperature, &mut self.rng)
            }
        };
        let mut pending = Vec::with_capacity(8);
        let mut ended = false;
        match self.state.as_mut() {
            None => {
                if self.stop_tokens.contains(&tok) {
                    ended = true;
                } else {
                    pending.push(tok);
                }
            }
            Some(st) => {
                st.advance(tok)?;
                if st.is_done() {
                    ended = true;
                } else {
                    pending.push(tok);
                    while let Some(f) = st.forced() {
                        st.advance(f)?;
                        if st.is_done() {
                            ended = true;
                            break;
                        }
                        pending.push(f);
                        self.forced_tokens += 1;
                    }
                }
            }
        }
        self.out.extend_from_slice(&pending);
        if ended {
            self.stop = Some(StopReason::EndToken);
            return Ok(None);
        }
        if self.state.is_none() && self.out.len() >= self.max_new {
            self.stop = Some(StopReason::MaxTokens);
            return Ok(None);
        }
        self.forward_calls += 1;
        self.forward_tokens += pending.len();
        Ok(Some(pending))
    }

    /// The finished answer.
    pub fn outcome(self) -> Result<DecodeOutcome> {
        let Some(stop) = self.stop else { bail!("decoding is not finished") };
        Ok(DecodeOutcome {
            chosen: self.state.as_ref().and_then(|s| s.chosen().map(|c| c.to_vec())),
            tokens: self.out,
            stop,
            forced_tokens: self.forced_tokens,
            forward_calls: self.forward_calls,
            forward_tokens: self.forward_tokens,
        })
    }
}

/// One answer decoded on its own (the tests drive [`Decoder`] through it): `first_logits` are
/// the logits after the prompt; `forward(tokens)` appends tokens to the model's state and
/// returns the logits after the last.
#[cfg(test)]
fn decode(
    first_logits: Vec<f32>,
    grammar: Option<&ChoiceGrammar>,
    stop_tokens: &[u32],
    settings: &GenerationSettings,
    mut forward: impl FnMut(&[u32]) -> Result<Vec<f32>>,
) -> Result<DecodeOutcome> {
    let mut decoder = Decoder::new(grammar, stop_tokens, settings);
    let mut logits = first_logits;
    while let Some(pending) = decoder.step(&logits)? {
        logits = forward(&pending)?;
    }
    decoder.outcome()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake word-level tokenizer: words and ";" are tokens, a leading space is part of the word
    /// (" Alien" != "Alien"), like byte-level BPE.
    struct FakeTok {
        vocab: Vec<String>,
    }

    const END: u32 = 0;

    impl FakeTok {
        fn new() -> Self {
            FakeTok { vocab: vec!["<end>".into()] }
        }
        fn id(&mut self, piece: &str) -> u32 {
            if let Some(i) = self.vocab.iter().position(|v| v == piece) {
                return i as u32;
            }
            self.vocab.push(piece.to_string());
            (self.vocab.len() - 1) as u32
        }
        fn encode(&mut self, text: &str) -> Result<Vec<u32>> {
            let mut out = Vec::new();
            let mut cur = String::new();
            for ch in text.chars() {
                if ch == ';' {
                    if !cur.is_empty() {
                        out.push(self.id(&cur));
                        cur.clear();
                    }
                    out.push(self.id(";"));
                } else if ch == ' ' && !cur.trim().is_empty() {
                    out.push(self.id(&cur));
                    cur = " ".into();
                } else {
                    cur.push(ch);
                }
            }
            if !cur.is_empty() {
                out.push(self.id(&cur));
            }
            Ok(out)
        }
        fn decode(&self, toks: &[u32]) -> String {
            toks.iter().map(|&t| self.vocab[t as usize].as_str()).collect()
        }
    }

    fn constraint(choices: &[&str], min: usize, max: usize) -> Constraint {
        Constraint {
            choices: choices.iter().map(|s| s.to_string()).collect(),
            min_items: min,
            max_items: max,
            separator: "; ".into(),
        }
    }

    fn grammar(tok: &mut FakeTok, c: &Constraint) -> ChoiceGrammar {
        ChoiceGrammar::new(c, |s| tok.encode(s), END).unwrap()
    }

    /// A logit source that prefers tokens in `prefs` order (first = highest), for `n` tokens.
    fn logits_preferring(n: usize, prefs: &[u32]) -> Vec<f32> {
        let mut l = vec![-10.0f32; n];
        for (r, &t) in prefs.iter().enumerate() {
            l[t as usize] = 10.0 - r as f32;
        }
        l
    }

    #[test]
    fn trie_shares_prefixes() {
        let mut t = TokenTrie::new();
        t.insert(&[1, 2, 3], 0);
        t.insert(&[1, 2, 4], 1);
        t.insert(&[1, 2], 2);
        assert_eq!(t.len(), 5);
        let a = t.child(0, 1).unwrap();
        let b = t.child(a, 2).unwrap();
        assert_eq!(t.nodes[b].terminal, Some(2));
        assert_eq!(t.nodes[b].choices, vec![0, 1, 2]);
        assert!(t.child(b, 5).is_none());
    }

    #[test]
    fn start_allows_first_tokens_of_unspaced_titles() {
        let mut tok = FakeTok::new();
        let c = constraint(&["Alien", "Heat", "Up"], 1, 5);
        let g = grammar(&mut tok, &c);
        let st = g.start();
        let mut want = vec![tok.id("Alien"), tok.id("Heat"), tok.id("Up")];
        want.sort();
        assert_eq!(st.allowed(), want);
        // the spaced variants are not allowed at the start
        assert!(!st.allowed().contains(&tok.id(" Alien")));
        assert!(!st.allowed().contains(&END));
    }

    #[test]
    fn separator_then_spaced_title_and_no_repeat() {
        let mut tok = FakeTok::new();
        let c = constraint(&["Alien", "Heat", "Up"], 1, 5);
        let g = grammar(&mut tok, &c);
        let mut st = g.start();
        st.advance(tok.id("Alien")).unwrap();
        let semi = tok.id(";");
        let mut want = vec![END, semi];
        want.sort();
        assert_eq!(st.allowed(), want);
        st.advance(semi).unwrap();
        let a = st.allowed();
        assert!(a.contains(&tok.id(" Heat")) && a.contains(&tok.id(" Up")));
        assert!(!a.contains(&tok.id(" Alien")), "no repeat: {a:?}");
        assert!(!a.contains(&END), "cannot end right after the separator");
        assert!(st.advance(tok.id(" Alien")).is_err());
    }

    #[test]
    fn min_items_blocks_early_end_and_max_items_forces_end() {
        let mut tok = FakeTok::new();
        let c = constraint(&["Alien", "Heat", "Up", "Jaws"], 2, 3);
        let g = grammar(&mut tok, &c);
        let mut st = g.start();
        st.advance(tok.id("Heat")).unwrap();
        // one title complete, min 2: only the separator
        assert_eq!(st.allowed(), vec![tok.id(";")]);
        assert_eq!(st.forced(), Some(tok.id(";")));
        st.advance(tok.id(";")).unwrap();
        st.advance(tok.id(" Up")).unwrap();
        let mut want = vec![END, tok.id(";")];
        want.sort();
        assert_eq!(st.allowed(), want);
        st.advance(tok.id(";")).unwrap();
        st.advance(tok.id(" Jaws")).unwrap();
        // three complete = max: only the end
        assert_eq!(st.allowed(), vec![END]);
        st.advance(END).unwrap();
        assert!(st.is_done());
        let mut idx = st.chosen().unwrap().to_vec();
        idx.sort();
        assert_eq!(idx, vec![1, 2, 3]);
    }

    #[test]
    fn all_choices_used_allows_end_even_below_min() {
        let mut tok = FakeTok::new();
        let c = constraint(&["Alien"], 3, 5);
        let g = grammar(&mut tok, &c);
        assert_eq!(g.min_items(), 1);
        assert_eq!(g.max_items(), 1);
        let mut st = g.start();
        st.advance(tok.id("Alien")).unwrap();
        assert_eq!(st.allowed(), vec![END]);
    }

    #[test]
    fn title_that_is_prefix_of_another_keeps_both_readings() {
        let mut tok = FakeTok::new();
        let c = constraint(&["Star Wars", "Star Wars Episode", "Heat"], 1, 5);
        let g = grammar(&mut tok, &c);
        let mut st = g.start();
        st.advance(tok.id("Star")).unwrap();
        assert_eq!(st.forced(), Some(tok.id(" Wars")));
        st.advance(tok.id(" Wars")).unwrap();
        let a = st.allowed();
        assert!(a.contains(&tok.id(" Episode")) && a.contains(&tok.id(";")) && a.contains(&END), "{a:?}");
        // take the separator: "Star Wars" is chosen, "Star Wars Episode" is still open
        st.advance(tok.id(";")).unwrap();
        let a = st.allowed();
        assert!(a.contains(&tok.id(" Star")) && a.contains(&tok.id(" Heat")));
        st.advance(tok.id(" Star")).unwrap();
        st.advance(tok.id(" Wars")).unwrap();
        // " Star Wars" again would repeat: must continue with " Episode"
        assert_eq!(st.forced(), Some(tok.id(" Episode")));
    }

    #[test]
    fn duplicates_and_empty_choices_are_dropped() {
        let mut tok = FakeTok::new();
        let c = constraint(&["Heat", " Heat ", "", "Up"], 1, 5);
        let g = grammar(&mut tok, &c);
        assert_eq!(g.choices, vec!["Heat".to_string(), "Up".to_string()]);
        let empty = constraint(&["", "  "], 1, 5);
        assert!(ChoiceGrammar::new(&empty, |s| tok.encode(s), END).is_err());
    }

    #[test]
    fn pick_token_greedy_masks_and_breaks_ties_low() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let l = vec![0.0, 5.0, 3.0, 5.0];
        assert_eq!(pick_token(&l, None, 0.0, &mut rng), 1);
        assert_eq!(pick_token(&l, Some(&[2, 3]), 0.0, &mut rng), 3);
        assert_eq!(pick_token(&l, Some(&[0, 2]), 0.0, &mut rng), 2);
        // out-of-range allowed ids count as -inf
        assert_eq!(pick_token(&l, Some(&[0, 99]), 0.0, &mut rng), 0);
        // sampling never leaves the allowed set and is seed-deterministic
        let samples: Vec<u32> = (0..50).map(|_| pick_token(&l, Some(&[0, 2]), 1.0, &mut rng)).collect();
        assert!(samples.iter().all(|t| *t == 0 || *t == 2));
        let mut r1 = ChaCha8Rng::seed_from_u64(7);
        let mut r2 = ChaCha8Rng::seed_from_u64(7);
        let a: Vec<u32> = (0..20).map(|_| pick_token(&l, None, 2.0, &mut r1)).collect();
        let b: Vec<u32> = (0..20).map(|_| pick_token(&l, None, 2.0, &mut r2)).collect();
        assert_eq!(a, b);
    }

    /// The decode loop against a fake model whose logits always prefer the same tokens: the
    /// answer follows the grammar, forced tokens are batched into one forward call.
    #[test]
    fn decode_with_fake_model_follows_grammar_and_batches_forced_tokens() {
        let mut tok = FakeTok::new();
        let c = constraint(&["Star Wars Episode Four", "Heat", "Up", "Jaws"], 2, 5);
        let g = grammar(&mut tok, &c);
        let n = tok.vocab.len() + 4;
        // The model always wants: END, "Star", " Jaws", ";"...
        let prefs = vec![END, tok.id("Star"), tok.id(" Jaws"), tok.id(";"), tok.id(" Up")];
        let mut calls: Vec<Vec<u32>> = Vec::new();
        let settings = GenerationSettings { max_new_tokens: 64, temperature: 0.0, seed: 1 };
        let out = decode(logits_preferring(n, &prefs), Some(&g), &[END], &settings, |toks| {
            calls.push(toks.to_vec());
            Ok(logits_preferring(n, &prefs))
        })
        .unwrap();
        let text = tok.decode(&out.tokens);
        assert_eq!(text, "Star Wars Episode Four; Jaws");
        assert_eq!(out.stop, StopReason::EndToken);
        // "Star" sampled, then " Wars Episode Four" forced; then ";" forced (min 2) → one call
        assert_eq!(
            calls[0],
            vec![tok.id("Star"), tok.id(" Wars"), tok.id(" Episode"), tok.id(" Four"), tok.id(";")]
        );
        assert_eq!(out.forced_tokens, 4);
        assert_eq!(calls.len(), 2);
        assert_eq!(out.forward_calls, 2);
        let mut chosen = out.chosen.unwrap();
        chosen.sort();
        assert_eq!(chosen, vec![0, 3]);
    }

    #[test]
    fn decode_finishing_mode_keeps_answer_parseable() {
        let mut tok = FakeTok::new();
        let c = constraint(&["A B C D E", "F"], 2, 2);
        let g = grammar(&mut tok, &c);
        let n = tok.vocab.len();
        let settings = GenerationSettings { max_new_tokens: 2, temperature: 0.0, seed: 1 };
        // prefers F first: "F" then ";" (forced, min 2) then " A B C D E" (forced) then END
        let prefs = vec![tok.id("F"), END];
        let out = decode(logits_preferring(n, &prefs), Some(&g), &[END], &settings, |_| {
            Ok(logits_preferring(n, &prefs))
        })
        .unwrap();
        assert_eq!(tok.decode(&out.tokens), "F; A B C D E");
        // budget of 1 token: the first title is completed, then the answer ends below min
        let settings = GenerationSettings { max_new_tokens: 1, temperature: 0.0, seed: 1 };
        let prefs = vec![tok.id("A"), END];
        let c = constraint(&["A B C D E", "F", "G"], 1, 3);
        let g = grammar(&mut tok, &c);
        let n = tok.vocab.len();
        let out = decode(logits_preferring(n, &prefs), Some(&g), &[END], &settings, |_| {
            Ok(logits_preferring(n, &prefs))
        })
        .unwrap();
        assert_eq!(tok.decode(&out.tokens), "A B C D E");
    }

    #[test]
    fn decode_unconstrained_stops_at_stop_token_or_budget() {
        let settings = GenerationSettings { max_new_tokens: 5, temperature: 0.0, seed: 1 };
        // token i+1 follows token i, stop token 4
        let mut last = 0u32;
        let out = decode(logits_preferring(10, &[1]), None, &[4], &settings, |toks| {
            last = *toks.last().unwrap();
            Ok(logits_preferring(10, &[last + 1]))
        })
        .unwrap();
        assert_eq!(out.tokens, vec![1, 2, 3]);
        assert_eq!(out.stop, StopReason::EndToken);
        let out = decode(logits_preferring(10, &[1]), None, &[99], &settings, |toks| {
            Ok(logits_preferring(10, &[toks[0] + 1]))
        })
        .unwrap();
        assert_eq!(out.tokens, vec![1, 2, 3, 4, 5]);
        assert_eq!(out.stop, StopReason::MaxTokens);
    }
}
