//! Raw Amazon review data (2014, 5-core; McAuley et al.) turned into sessions as the LLM-DMsRec
//! authors did for Beauty:
//!
//! * reviews: JSON lines with at least `reviewerID`, `asin` and `unixReviewTime`, optionally
//!   gzip-compressed (detected by the gzip magic bytes);
//! * every user is one session: their reviews sorted by time (stable: ties keep file order);
//!   users are ordered by their first appearance in the file;
//! * item id = 1 + rank of the ASIN among all reviewed ASINs sorted as strings;
//! * the first `floor(0.9·U)` users are train, the rest test; every prefix gives an example
//!   (`s[:k] → s[k]`, k ≥ 1) in both; the training sequences are the train users' full sequences;
//! * titles come from the metadata file (`meta_*.json(.gz)`), one Python literal dict per line
//!   (not JSON: single-quoted strings etc.; see [`parse_python_literal`]), with HTML entities
//!   decoded; an item without metadata or title gets an empty title. Each item has the field
//!   `asin`.
//!
//! For Beauty the real files give 22,363 users (20,126 / 2,237), 12,101 items and 158,717 /
//! 17,422 examples.

use crate::{sessions_to_examples, Catalog, DataError, Dataset, ItemInfo, Result};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Parameters of the protocol; the defaults are the paper authors'.
#[derive(Debug, Clone, PartialEq)]
pub struct AmazonOptions {
    /// Fraction of users (in order of first appearance) used for training.
    pub train_fraction: f64,
    /// Every prefix of a session gives an example (the authors' Beauty protocol).
    pub prefix_augmentation: bool,
}

impl Default for AmazonOptions {
    fn default() -> Self {
        Self { train_fraction: 0.9, prefix_augmentation: true }
    }
}

/// Counts along the way, for the CLI to print.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmazonReport {
    pub n_reviews: usize,
    pub n_users: usize,
    pub n_items: usize,
    pub n_train_users: usize,
    pub n_test_users: usize,
    pub n_train_examples: usize,
    pub n_test_examples: usize,
    /// Items that got a non-empty title from the metadata.
    pub n_items_with_title: usize,
}

/// Opens a file for line reading, decompressing it when it starts with the gzip magic bytes.
pub fn open_maybe_gz(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let head = reader.fill_buf().map_err(|e| DataError::io(path, e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(1 << 16, flate2::read::MultiGzDecoder::new(reader))))
    } else {
        Ok(Box::new(reader))
    }
}

/// Calls `f(line_no, line)` for every non-blank line (1-based numbers, line end stripped).
/// Read errors (e.g. a corrupt gzip stream) are reported at the line being read.
fn for_each_line(path: &Path, mut f: impl FnMut(usize, &[u8]) -> Result<()>) -> Result<()> {
    let mut reader = open_maybe_gz(path)?;
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        line_no += 1;
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| DataError::parse(path, line_no, format!("read error: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        let mut line = buf.as_slice();
        while let [rest @ .., b'\n' | b'\r'] = line {
            line = rest;
        }
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        f(line_no, line)?;
    }
}

#[derive(serde::Deserialize)]
struct ReviewLine {
    #[serde(rename = "reviewerID")]
    reviewer: String,
    asin: String,
    #[serde(rename = "unixReviewTime")]
    time: i64,
}

/// serde_json's message without its "at line 1 column N" suffix (the file line is ours).
fn json_msg(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => format!("{} (column {})", &s[..i], e.column()),
        None => s,
    }
}

/// Per-user review sequences of ASINs, users in order of first appearance, each sorted by time
/// (stable).
pub fn read_review_sequences(path: &Path) -> Result<Vec<(String, Vec<String>)>> {
    let mut user_index: HashMap<String, usize> = HashMap::new();
    let mut users: Vec<(String, Vec<(i64, String)>)> = Vec::new();
    for_each_line(path, |line_no, line| {
        let r: ReviewLine = serde_json::from_slice(line)
            .map_err(|e| DataError::parse(path, line_no, format!("invalid review JSON: {}", json_msg(&e))))?;
        if r.asin.is_empty() || r.reviewer.is_empty() {
            return Err(DataError::parse(path, line_no, "empty reviewerID or asin"));
        }
        let idx = *user_index.entry(r.reviewer.clone()).or_insert_with(|| {
            users.push((r.reviewer, Vec::new()));
            users.len() - 1
        });
        users[idx].1.push((r.time, r.asin));
        Ok(())
    })?;
    Ok(users
        .into_iter()
        .map(|(u, mut events)| {
            events.sort_by_key(|&(t, _)| t);
            (u, events.into_iter().map(|(_, a)| a).collect())
        })
        .collect())
}

/// `asin → title` from a metadata file, for the ASINs in `wanted` only (first line wins).
pub fn read_meta_titles(path: &Path, wanted: &HashMap<String, u32>) -> Result<HashMap<String, String>> {
    let mut titles: HashMap<String, String> = HashMap::new();
    for_each_line(path, |line_no, line| {
        let text = utf8_or_latin1(line);
        let value = parse_python_literal(&text)
            .map_err(|e| DataError::parse(path, line_no, format!("invalid metadata literal: {e}")))?;
        if !matches!(value, PyValue::Dict(_)) {
            return Err(DataError::parse(path, line_no, "expected a dict"));
        }
        let asin = match value.get("asin") {
            Some(PyValue::Str(a)) => a,
            Some(_) => return Err(DataError::parse(path, line_no, "`asin` is not a string")),
            None => return Err(DataError::parse(path, line_no, "no `asin` key")),
        };
        if !wanted.contains_key(asin) || titles.contains_key(asin) {
            return Ok(());
        }
        let title = match value.get("title") {
            Some(PyValue::Str(t)) => decode_html_entities(t),
            Some(PyValue::None) | None => String::new(),
            Some(_) => return Err(DataError::parse(path, line_no, "`title` is not a string")),
        };
        titles.insert(asin.clone(), title);
        Ok(())
    })?;
    Ok(titles)
}

/// `reviews_Beauty_5.json.gz` → `beauty`.
fn dataset_name(reviews_path: &Path) -> String {
    let mut name = reviews_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    for ext in [".gz", ".json", ".jsonl"] {
        if let Some(s) = name.strip_suffix(ext) {
            name = s.to_string();
        }
    }
    let name = name.strip_prefix("reviews_").unwrap_or(&name);
    let name = name.strip_suffix("_5").unwrap_or(name);
    if name.is_empty() {
        "amazon".into()
    } else {
        name.to_lowercase()
    }
}

/// Reads reviews (and optional metadata) with the paper's protocol.
pub fn read_amazon(reviews_path: &Path, meta_path: Option<&Path>) -> Result<Dataset> {
    read_amazon_with(reviews_path, meta_path, &AmazonOptions::default()).map(|(ds, _)| ds)
}

/// [`read_amazon`] with explicit options, also returning the counts.
pub fn read_amazon_with(
    reviews_path: &Path,
    meta_path: Option<&Path>,
    opts: &AmazonOptions,
) -> Result<(Dataset, AmazonReport)> {
    crate::check_fraction("train fraction", opts.train_fraction)?;
    let users = read_review_sequences(reviews_path)?;
    let mut asins: Vec<&str> = users.iter().flat_map(|(_, s)| s.iter().map(String::as_str)).collect();
    let n_reviews = asins.len();
    asins.sort_unstable();
    asins.dedup();
    let id_of: HashMap<String, u32> =
        asins.iter().enumerate().map(|(i, a)| (a.to_string(), i as u32 + 1)).collect();
    let titles = match meta_path {
        Some(p) => read_meta_titles(p, &id_of)?,
        None => HashMap::new(),
    };
    let items: Vec<ItemInfo> = asins
        .iter()
        .map(|a| {
            let title = titles.get(*a).cloned().unwrap_or_default();
            ItemInfo { prompt_title: title.clone(), title, fields: vec![("asin".into(), a.to_string())] }
        })
        .collect();
    let sessions: Vec<Vec<u32>> = users.iter().map(|(_, s)| s.iter().map(|a| id_of[a]).collect()).collect();
    let n_train = crate::movielens::train_count(sessions.len(), opts.train_fraction);
    let (train_s, test_s) = sessions.split_at(n_train);
    let train = sessions_to_examples(train_s, opts.prefix_augmentation);
    let test = sessions_to_examples(test_s, opts.prefix_augmentation);
    let report = AmazonReport {
        n_reviews,
        n_users: sessions.len(),
        n_items: items.len(),
        n_train_users: train_s.len(),
        n_test_users: test_s.len(),
        n_train_examples: train.len(),
        n_test_examples: test.len(),
        n_items_with_title: items.iter().filter(|i| !i.title.is_empty()).count(),
    };
    let ds = Dataset {
        name: dataset_name(reviews_path),
        catalog: Catalog::new(items),
        train,
        test,
        train_sequences: train_s.to_vec(),
    };
    ds.validate()?;
    Ok((ds, report))
}

/// Decodes bytes as UTF-8, taking every byte that is not part of a valid UTF-8 sequence as
/// Latin-1 (so `\xe9` alone is `é`, and `\xc3\xa9` is `é` too).
pub fn utf8_or_latin1(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(valid).expect("valid prefix"));
                let bad = e.error_len().unwrap_or(after.len());
                out.extend(after[..bad].iter().map(|&b| b as char));
                rest = &after[bad..];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTML entities

fn named_entity(name: &str) -> Option<&'static str> {
    Some(match name {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "quot" => "\"",
        "apos" => "'",
        // Spaces become plain spaces and soft hyphens vanish: titles are prompt text.
        "nbsp" | "ensp" | "emsp" | "thinsp" => " ",
        "shy" => "",
        "ndash" => "–",
        "mdash" => "—",
        "hellip" => "…",
        "lsquo" => "‘",
        "rsquo" => "’",
        "ldquo" => "“",
        "rdquo" => "”",
        "laquo" => "«",
        "raquo" => "»",
        "bull" => "•",
        "middot" => "·",
        "copy" => "©",
        "reg" => "®",
        "trade" => "™",
        "deg" => "°",
        "plusmn" => "±",
        "times" => "×",
        "divide" => "÷",
        "micro" => "µ",
        "para" => "¶",
        "sect" => "§",
        "cent" => "¢",
        "pound" => "£",
        "euro" => "€",
        "yen" => "¥",
        "frac12" => "½",
        "frac14" => "¼",
        "frac34" => "¾",
        "sup2" => "²",
        "sup3" => "³",
        "iexcl" => "¡",
        "iquest" => "¿",
        "szlig" => "ß",
        "Agrave" => "À",
        "Aacute" => "Á",
        "Acirc" => "Â",
        "Atilde" => "Ã",
        "Auml" => "Ä",
        "Aring" => "Å",
        "AElig" => "Æ",
        "Ccedil" => "Ç",
        "Egrave" => "È",
        "Eacute" => "É",
        "Ecirc" => "Ê",
        "Euml" => "Ë",
        "Igrave" => "Ì",
        "Iacute" => "Í",
        "Icirc" => "Î",
        "Iuml" => "Ï",
        "Ntilde" => "Ñ",
        "Ograve" => "Ò",
        "Oacute" => "Ó",
        "Ocirc" => "Ô",
        "Otilde" => "Õ",
        "Ouml" => "Ö",
        "Oslash" => "Ø",
        "Ugrave" => "Ù",
        "Uacute" => "Ú",
        "Ucirc" => "Û",
        "Uuml" => "Ü",
        "agrave" => "à",
        "aacute" => "á",
        "acirc" => "â",
        "atilde" => "ã",
        "auml" => "ä",
        "aring" => "å",
        "aelig" => "æ",
        "ccedil" => "ç",
        "egrave" => "è",
        "eacute" => "é",
        "ecirc" => "ê",
        "euml" => "ë",
        "igrave" => "ì",
        "iacute" => "í",
        "icirc" => "î",
        "iuml" => "ï",
        "ntilde" => "ñ",
        "ograve" => "ò",
        "oacute" => "ó",
        "ocirc" => "ô",
        "otilde" => "õ",
        "ouml" => "ö",
        "oslash" => "ø",
        "ugrave" => "ù",
        "uacute" => "ú",
        "ucirc" => "û",
        "uuml" => "ü",
        "yacute" => "ý",
        "yuml" => "ÿ",
        _ => return None,
    })
}

/// Decodes HTML character references (`&amp;`, `&eacute;`, `&#39;`, `&#x27;`) in one pass;
/// unknown or malformed references are kept as they are.
pub fn decode_html_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        // A reference is `&name;` / `&#digits;` / `&#xhex;` of at most 32 characters.
        let semi = tail[1..].find(';').filter(|&i| i <= 32).map(|i| i + 1);
        let decoded = semi.and_then(|semi| {
            let body = &tail[1..semi];
            let text = if let Some(num) = body.strip_prefix('#') {
                let code = match num.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => num.parse::<u32>().ok(),
                }?;
                char::from_u32(code).filter(|&c| c != '\0')?.to_string()
            } else {
                if !body.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return None;
                }
                named_entity(body)?.to_string()
            };
            Some((text, semi + 1))
        });
        match decoded {
            Some((text, consumed)) => {
                out.push_str(&text);
                rest = &tail[consumed..];
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

// ---------------------------------------------------------------------------------------------
// Python literals

/// A Python literal value (what `ast.literal_eval` accepts, minus complex numbers and bytes
/// arithmetic).
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<PyValue>),
    Tuple(Vec<PyValue>),
    Set(Vec<PyValue>),
    /// Entries in source order.
    Dict(Vec<(PyValue, PyValue)>),
}

impl PyValue {
    /// The value of a string key of a dict.
    pub fn get(&self, key: &str) -> Option<&PyValue> {
        match self {
            PyValue::Dict(entries) => {
                entries.iter().find(|(k, _)| matches!(k, PyValue::Str(s) if s == key)).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            PyValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

const MAX_DEPTH: usize = 200;

/// Parses one Python literal: strings (single, double or triple quoted, with `u`/`b`/`r`
/// prefixes and all escapes), ints, floats, `True`/`False`/`None` (and JSON's
/// `true`/`false`/`null`), lists, tuples, dicts and sets. Adjacent string literals are
/// concatenated.
///
/// Strings without a `u` prefix are read with Python 2 byte-string semantics: `\xhh` and octal
/// escapes are bytes, and the bytes are decoded as UTF-8, or as Latin-1 when they are not valid
/// UTF-8 (the 2014 metadata was written by Python 2).
pub fn parse_python_literal(text: &str) -> std::result::Result<PyValue, String> {
    let mut p = PyParser { s: text.as_bytes(), i: 0, depth: 0 };
    p.skip_ws();
    let v = p.value()?;
    p.skip_ws();
    if p.i < p.s.len() {
        return Err(p.err("unexpected text after the value"));
    }
    Ok(v)
}

struct PyParser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl PyParser<'_> {
    fn err(&self, msg: &str) -> String {
        format!("column {}: {msg}", self.i + 1)
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_ascii_whitespace() {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn value(&mut self) -> std::result::Result<PyValue, String> {
        let Some(c) = self.peek() else {
            return Err(self.err("unexpected end of input, expected a value"));
        };
        match c {
            b'[' | b'(' | b'{' => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(self.err("nesting too deep"));
                }
                let v = match c {
                    b'[' => self.sequence(b']').map(|(items, _)| PyValue::List(items)),
                    b'(' => self.tuple_or_group(),
                    _ => self.dict_or_set(),
                };
                self.depth -= 1;
                v
            }
            b'\'' | b'"' => self.strings(),
            b'-' | b'+' | b'.' | b'0'..=b'9' => self.number(),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = self.i;
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_') {
                    self.i += 1;
                }
                let word = &self.s[start..self.i];
                if matches!(self.peek(), Some(b'\'' | b'"'))
                    && word.len() <= 2
                    && word.iter().all(|c| b"uUbBrR".contains(c))
                {
                    self.i = start;
                    return self.strings();
                }
                match word {
                    b"None" | b"null" => Ok(PyValue::None),
                    b"True" | b"true" => Ok(PyValue::Bool(true)),
                    b"False" | b"false" => Ok(PyValue::Bool(false)),
                    b"nan" => Ok(PyValue::Float(f64::NAN)),
                    b"inf" => Ok(PyValue::Float(f64::INFINITY)),
                    _ => {
                        self.i = start;
                        Err(self.err(&format!("unexpected name {:?}", String::from_utf8_lossy(word))))
                    }
                }
            }
            _ => Err(self.err(&format!("unexpected character {:?}", c as char))),
        }
    }

    /// Elements up to `close`, separated by commas, trailing comma allowed. Starts at the opener.
    /// Also says whether a comma was seen (to tell `(x)` from `(x,)`).
    fn sequence(&mut self, close: u8) -> std::result::Result<(Vec<PyValue>, bool), String> {
        self.i += 1;
        let mut items = Vec::new();
        let mut comma = false;
        loop {
            self.skip_ws();
            if self.peek() == Some(close) {
                self.i += 1;
                return Ok((items, comma));
            }
            items.push(self.value()?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    comma = true;
                    self.i += 1;
                }
                Some(c) if c == close => {
                    self.i += 1;
                    return Ok((items, comma));
                }
                Some(_) => return Err(self.err(&format!("expected ',' or '{}'", close as char))),
                None => {
                    return Err(self.err(&format!("unexpected end of input, expected '{}'", close as char)))
                }
            }
        }
    }

    /// `()`, `(x,)`, `(x, y)` are tuples; `(x)` is just `x`.
    fn tuple_or_group(&mut self) -> std::result::Result<PyValue, String> {
        let (items, comma) = self.sequence(b')')?;
        if items.len() == 1 && !comma {
            Ok(items.into_iter().next().expect("one item"))
        } else {
            Ok(PyValue::Tuple(items))
        }
    }

    fn dict_or_set(&mut self) -> std::result::Result<PyValue, String> {
        self.i += 1;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(PyValue::Dict(Vec::new()));
        }
        let first = self.value()?;
        self.skip_ws();
        if self.peek() != Some(b':') {
            // A set: continue as a sequence after the first element.
            let mut items = vec![first];
            loop {
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(b'}') => {
                        self.i += 1;
                        return Ok(PyValue::Set(items));
                    }
                    Some(_) => return Err(self.err("expected ',', ':' or '}'")),
                    None => return Err(self.err("unexpected end of input, expected '}'")),
                }
                self.skip_ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(PyValue::Set(items));
                }
                items.push(self.value()?);
                self.skip_ws();
            }
        }
        let mut entries = Vec::new();
        let mut key = first;
        loop {
            // At ':'.
            self.i += 1;
            self.skip_ws();
            let value = self.value()?;
            entries.push((key, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(PyValue::Dict(entries));
                }
                Some(_) => return Err(self.err("expected ',' or '}'")),
                None => return Err(self.err("unexpected end of input, expected '}'")),
            }
            self.skip_ws();
            if self.peek() == Some(b'}') {
                self.i += 1;
                return Ok(PyValue::Dict(entries));
            }
            key = self.value()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.err("expected ':' after a dict key"));
            }
        }
    }

    fn number(&mut self) -> std::result::Result<PyValue, String> {
        let start = self.i;
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.i += 1;
            self.skip_ws();
            // `-inf`
            if self.s[self.i..].starts_with(b"inf") {
                self.i += 3;
                let neg = self.s[start] == b'-';
                return Ok(PyValue::Float(if neg { f64::NEG_INFINITY } else { f64::INFINITY }));
            }
        }
        let digits_start = self.i;
        let mut is_float = false;
        while let Some(c) = self.peek() {
            match c {
                b'0'..=b'9' | b'_' => self.i += 1,
                b'.' => {
                    is_float = true;
                    self.i += 1;
                }
                b'e' | b'E' => {
                    is_float = true;
                    self.i += 1;
                    if matches!(self.peek(), Some(b'-' | b'+')) {
                        self.i += 1;
                    }
                }
                _ => break,
            }
        }
        let body: String = std::str::from_utf8(&self.s[digits_start..self.i])
            .expect("ascii")
            .chars()
            .filter(|&c| c != '_')
            .collect();
        let neg = self.s[start] == b'-';
        // Python 2 long suffix.
        if matches!(self.peek(), Some(b'l' | b'L')) && !is_float {
            self.i += 1;
        }
        if matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric()) {
            return Err(self.err("malformed number"));
        }
        if body.is_empty() || body == "." {
            self.i = start;
            return Err(self.err("malformed number"));
        }
        let text = if neg { format!("-{body}") } else { body };
        if !is_float {
            if let Ok(v) = text.parse::<i64>() {
                return Ok(PyValue::Int(v));
            }
        }
        text.parse::<f64>()
            .map(PyValue::Float)
            .map_err(|_| format!("column {}: malformed number {:?}", start + 1, text))
    }

    /// One or more adjacent string literals, concatenated.
    fn strings(&mut self) -> std::result::Result<PyValue, String> {
        let mut out = self.string()?;
        loop {
            let save = self.i;
            self.skip_ws();
            let mut j = self.i;
            while j < self.s.len() && j - self.i < 2 && b"uUbBrR".contains(&self.s[j]) {
                j += 1;
            }
            if matches!(self.s.get(j), Some(b'\'' | b'"')) {
                out.push_str(&self.string()?);
            } else {
                self.i = save;
                return Ok(PyValue::Str(out));
            }
        }
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        let start = self.i;
        let (mut raw, mut unicode, mut bytes) = (false, false, false);
        while let Some(c) = self.peek() {
            match c {
                b'r' | b'R' => raw = true,
                b'u' | b'U' => unicode = true,
                b'b' | b'B' => bytes = true,
                _ => break,
            }
            self.i += 1;
        }
        let quote = self.peek().ok_or_else(|| self.err("expected a string"))?;
        let triple = self.s[self.i..].starts_with(&[quote; 3]);
        self.i += if triple { 3 } else { 1 };
        // Code points are pushed UTF-8 encoded; byte escapes (non-unicode strings) raw.
        let mut buf: Vec<u8> = Vec::new();
        let push_char = |buf: &mut Vec<u8>, c: char| {
            let mut tmp = [0u8; 4];
            buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
        };
        let mut pending_high: Option<u32> = None;
        loop {
            // A high surrogate must be followed by a \u low surrogate; otherwise it is replaced.
            if pending_high.is_some() {
                let next_is_u =
                    !raw && self.peek() == Some(b'\\') && matches!(self.s.get(self.i + 1), Some(b'u' | b'U'));
                if !next_is_u {
                    pending_high = None;
                    push_char(&mut buf, char::REPLACEMENT_CHARACTER);
                }
            }
            let Some(c) = self.peek() else {
                self.i = start;
                return Err(self.err("unterminated string"));
            };
            if c == quote && (!triple || self.s[self.i..].starts_with(&[quote; 3])) {
                self.i += if triple { 3 } else { 1 };
                break;
            }
            if c == b'\n' && !triple {
                self.i = start;
                return Err(self.err("unterminated string"));
            }
            if c != b'\\' {
                buf.push(c);
                self.i += 1;
                continue;
            }
            // A backslash.
            let Some(e) = self.s.get(self.i + 1).copied() else {
                self.i = start;
                return Err(self.err("unterminated string"));
            };
            if raw {
                buf.push(b'\\');
                buf.push(e);
                self.i += 2;
                continue;
            }
            self.i += 2;
            let mut code_point: Option<u32> = None;
            match e {
                b'\n' => {}
                b'\\' => buf.push(b'\\'),
                b'\'' => buf.push(b'\''),
                b'"' => buf.push(b'"'),
                b'a' => buf.push(0x07),
                b'b' => buf.push(0x08),
                b'f' => buf.push(0x0c),
                b'n' => buf.push(b'\n'),
                b'r' => buf.push(b'\r'),
                b't' => buf.push(b'\t'),
                b'v' => buf.push(0x0b),
                b'0'..=b'7' => {
                    let mut v = (e - b'0') as u32;
                    for _ in 0..2 {
                        match self.peek() {
                            Some(d @ b'0'..=b'7') => {
                                v = v * 8 + (d - b'0') as u32;
                                self.i += 1;
                            }
                            _ => break,
                        }
                    }
                    if unicode {
                        code_point = Some(v);
                    } else {
                        buf.push((v & 0xff) as u8);
                    }
                }
                b'x' | b'u' | b'U' if e == b'x' || (unicode || !bytes) => {
                    let n = match e {
                        b'x' => 2,
                        b'u' => 4,
                        _ => 8,
                    };
                    let hex = self.s.get(self.i..self.i + n).ok_or_else(|| self.err("truncated escape"))?;
                    let v = std::str::from_utf8(hex)
                        .ok()
                        .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .ok_or_else(|| self.err("malformed \\x/\\u escape"))?;
                    self.i += n;
                    if e == b'x' && !unicode {
                        buf.push(v as u8);
                    } else {
                        code_point = Some(v);
                    }
                }
                other => {
                    // Unknown escapes keep the backslash, as in Python.
                    buf.push(b'\\');
                    buf.push(other);
                }
            }
            if let Some(cp) = code_point {
                match (pending_high.take(), cp) {
                    (Some(h), 0xDC00..=0xDFFF) => {
                        let c = 0x10000 + ((h - 0xD800) << 10) + (cp - 0xDC00);
                        push_char(&mut buf, char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
                    }
                    (h, 0xD800..=0xDBFF) => {
                        if h.is_some() {
                            push_char(&mut buf, char::REPLACEMENT_CHARACTER);
                        }
                        pending_high = Some(cp);
                    }
                    (h, cp) => {
                        if h.is_some() {
                            push_char(&mut buf, char::REPLACEMENT_CHARACTER);
                        }
                        push_char(&mut buf, char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER));
                    }
                }
            }
        }
        Ok(utf8_or_latin1(&buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Example;
    use std::io::Write;

    fn review(user: &str, asin: &str, t: i64) -> String {
        format!(
            "{{\"reviewerID\": \"{user}\", \"asin\": \"{asin}\", \"reviewerName\": \"X\", \"helpful\": [0, 0], \"reviewText\": \"ok\", \"overall\": 5.0, \"summary\": \"s\", \"unixReviewTime\": {t}, \"reviewTime\": \"01 1, 2014\"}}\n"
        )
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// 10 users: u0..u9, each with three reviews; u3's file order is not time order.
    fn reviews_text() -> String {
        let mut s = String::new();
        for u in 0..10 {
            let user = format!("U{}", 9 - u); // first appearance order: U9, U8, ..., U0
            if u == 3 {
                s += &review(&user, "B0C", 300);
                s += &review(&user, "B0A", 100);
                s += &review(&user, "B0B", 100); // tie with B0A: file order kept
            } else {
                s += &review(&user, "B0A", 10 * u as i64);
                s += &review(&user, &format!("B1{u}"), 10 * u as i64 + 1);
                s += &review(&user, "B0B", 10 * u as i64 + 2);
            }
        }
        s
    }

    const META: &str = r#"{'asin': 'B0A', 'title': "L'Oreal Paris Kids &amp; Co", 'related': {'also_bought': ['B0B', 'B0C'], 'bought_together': []}, 'price': 12.5, 'salesRank': {'Beauty': 1234}, 'categories': [['Beauty', 'Makeup']], 'imUrl': 'http://x/y.jpg'}
{'asin': 'B0B', 'title': 'Rock \'n\' Roll \\ Cr&egrave;me \xe9t\xc3\xa9 &#39;x&#x27;', 'description': "He said \"hi\"\n"}
{'asin': 'B0C', 'categories': [['Beauty']]}
{'asin': 'ZZZ', 'title': 'not reviewed'}

{'asin': 'B10', 'title': None}
{'asin': 'B11', 'title': u'Unicode \u00e9\u20ac', 'price': -3, 'flag': True, 'x': (1, 2), 'y': {1, 2}}
{'asin': 'B12', 'title': 'Second ' 'part'}
{'asin': 'B12', 'title': 'duplicate ignored'}
"#;

    fn write_fixture(dir: &Path, compress: bool) -> (std::path::PathBuf, std::path::PathBuf) {
        let (r, m) = if compress {
            (dir.join("reviews_Beauty_5.json.gz"), dir.join("meta_Beauty.json.gz"))
        } else {
            (dir.join("reviews_Beauty_5.json"), dir.join("meta_Beauty.json"))
        };
        let rt = reviews_text();
        std::fs::write(&r, if compress { gz(rt.as_bytes()) } else { rt.into_bytes() }).unwrap();
        std::fs::write(&m, if compress { gz(META.as_bytes()) } else { META.as_bytes().to_vec() }).unwrap();
        (r, m)
    }

    #[test]
    fn reads_plain_and_gzipped_reviews_and_metadata() {
        let d = tempfile::tempdir().unwrap();
        let (r_plain, m_plain) = write_fixture(d.path(), false);
        let (r_gz, m_gz) = write_fixture(d.path(), true);
        let (plain, rep) = read_amazon_with(&r_plain, Some(&m_plain), &AmazonOptions::default()).unwrap();
        let gzipped = read_amazon(&r_gz, Some(&m_gz)).unwrap();
        assert_eq!(plain, gzipped);
        assert_eq!(plain.name, "beauty");

        // ASINs sorted as strings: B0A B0B B0C B10 B11 B12 B14..B19 (no B13: user 3 is special).
        let asins: Vec<&str> = plain.catalog.iter().map(|(_, i)| i.field("asin").unwrap()).collect();
        assert_eq!(
            asins,
            vec!["B0A", "B0B", "B0C", "B10", "B11", "B12", "B14", "B15", "B16", "B17", "B18", "B19"]
        );
        assert_eq!(rep.n_items, 12);
        assert_eq!(rep.n_reviews, 30);
        // floor(0.9 * 10) = 9 train users, in order of first appearance.
        assert_eq!((rep.n_users, rep.n_train_users, rep.n_test_users), (10, 9, 1));
        assert_eq!(plain.train_sequences.len(), 9);
        // First user in the file is U9 (u = 0): B0A, B10, B0B.
        assert_eq!(plain.train_sequences[0], vec![1, 4, 2]);
        // User 3 in file order: sorted by time with the tie kept in file order: B0A, B0B, B0C.
        assert_eq!(plain.train_sequences[3], vec![1, 2, 3]);
        // Prefix augmentation: 2 examples per 3-item session.
        assert_eq!((rep.n_train_examples, rep.n_test_examples), (18, 2));
        assert_eq!(plain.train[0], Example { prefix: vec![1], target: 4 });
        assert_eq!(plain.train[1], Example { prefix: vec![1, 4], target: 2 });
        // Last user (u = 9 -> B19 = id 12).
        assert_eq!(
            plain.test,
            vec![Example { prefix: vec![1], target: 12 }, Example { prefix: vec![1, 12], target: 2 }]
        );

        // Titles: Python literals with apostrophes, escapes, entities; missing -> empty.
        assert_eq!(plain.catalog.title(1), "L'Oreal Paris Kids & Co");
        assert_eq!(plain.catalog.title(2), "Rock 'n' Roll \\ Crème \u{e9}t\u{e9} 'x'");
        assert_eq!(plain.catalog.title(3), "");
        assert_eq!(plain.catalog.title(4), "");
        assert_eq!(plain.catalog.title(5), "Unicode é€");
        assert_eq!(plain.catalog.title(6), "Second part");
        assert_eq!(plain.catalog.prompt_title(1), "L'Oreal Paris Kids & Co");
        assert_eq!(rep.n_items_with_title, 4);
    }

    #[test]
    fn without_metadata_titles_are_empty() {
        let d = tempfile::tempdir().unwrap();
        let (r, _) = write_fixture(d.path(), true);
        let ds = read_amazon(&r, None).unwrap();
        assert!(!ds.catalog.has_titles());
        assert_eq!(ds.n_items(), 12);
        let (ds, rep) =
            read_amazon_with(&r, None, &AmazonOptions { train_fraction: 0.5, prefix_augmentation: false })
                .unwrap();
        assert_eq!((rep.n_train_users, rep.n_test_users), (5, 5));
        assert_eq!(ds.train.len(), 5);
    }

    #[test]
    fn malformed_reviews_name_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("reviews.json");
        let good = review("A", "B", 1);
        let cases = [
            (
                format!("{good}{{\"reviewerID\": \"A\", \"asin\": \"B\"}}\n"),
                ":2: invalid review JSON: missing field `unixReviewTime`",
            ),
            (format!("{good}\n{good}not json\n"), ":4: invalid review JSON"),
            (
                "{\"reviewerID\": \"A\", \"asin\": \"B\", \"unixReviewTime\": \"x\"}\n".to_string(),
                ":1: invalid review JSON: invalid type",
            ),
            (
                "{\"reviewerID\": \"\", \"asin\": \"B\", \"unixReviewTime\": 3}\n".to_string(),
                ":1: empty reviewerID",
            ),
        ];
        for (text, want) in cases {
            std::fs::write(&p, &text).unwrap();
            let err = read_amazon(&p, None).unwrap_err().to_string();
            assert!(err.contains("reviews.json") && err.contains(want), "{text:?}: {err}");
        }
        // A truncated gzip stream is an error at the line being read, not a panic.
        let gzp = d.path().join("reviews.json.gz");
        let mut bytes = gz(reviews_text().repeat(20).as_bytes());
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&gzp, &bytes).unwrap();
        let err = read_amazon(&gzp, None).unwrap_err().to_string();
        assert!(err.contains("reviews.json.gz:"), "{err}");
        assert!(matches!(read_amazon(&d.path().join("none.json"), None), Err(DataError::Io { .. })));
    }

    #[test]
    fn malformed_metadata_names_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("reviews.json");
        std::fs::write(&r, review("A", "B0A", 1) + &review("A", "B0B", 2)).unwrap();
        let m = d.path().join("meta.json");
        let cases = [
            (
                "{'asin': 'B0A', 'title': 'x'}\n{'asin': 'B0B', 'title': 'unterminated}\n",
                "meta.json:2: invalid metadata literal: column 26: unterminated string",
            ),
            ("\n{'asin': 'B0A' 'title': 'x'}\n", "meta.json:2: invalid metadata literal"),
            ("['B0A']\n", "meta.json:1: expected a dict"),
            ("{'title': 'x'}\n", "meta.json:1: no `asin` key"),
            ("{'asin': 5}\n", "meta.json:1: `asin` is not a string"),
            ("{'asin': 'B0A', 'title': 5}\n", "meta.json:1: `title` is not a string"),
            ("{'asin': 'B0A', 'title': foo}\n", "unexpected name \"foo\""),
            ("{'asin': 'B0A'} trailing\n", "unexpected text after the value"),
        ];
        for (text, want) in cases {
            std::fs::write(&m, text).unwrap();
            let err = read_amazon(&r, Some(&m)).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn python_literal_parser() {
        use PyValue::*;
        let v = parse_python_literal(
            r#" {'a': [1, -2, 3.5, 1e3, 7L], "b": ('x',), 'c': (), 'd': (5), 'e': {}, 'f': {1, 2,}, 'g': None, 'h': [True, False], 'i': [[]],} "#,
        )
        .unwrap();
        assert_eq!(v.get("a"), Some(&List(vec![Int(1), Int(-2), Float(3.5), Float(1000.0), Int(7)])));
        assert_eq!(v.get("b"), Some(&Tuple(vec![Str("x".into())])));
        assert_eq!(v.get("c"), Some(&Tuple(vec![])));
        assert_eq!(v.get("d"), Some(&Int(5)));
        assert_eq!(v.get("e"), Some(&Dict(vec![])));
        assert_eq!(v.get("f"), Some(&Set(vec![Int(1), Int(2)])));
        assert_eq!(v.get("g"), Some(&None));
        assert_eq!(v.get("h"), Some(&List(vec![Bool(true), Bool(false)])));
        assert_eq!(v.get("i"), Some(&List(vec![List(vec![])])));
        let s = |src: &str| parse_python_literal(src).unwrap().as_str().unwrap().to_string();
        assert_eq!(s(r#"'it\'s'"#), "it's");
        assert_eq!(s(r#""it's""#), "it's");
        assert_eq!(s(r#"'a\tb\nc\\d\"e'"#), "a\tb\nc\\d\"e");
        assert_eq!(s(r#"'\101\x42'"#), "AB");
        assert_eq!(s(r#"'caf\xe9'"#), "café"); // lone Latin-1 byte
        assert_eq!(s(r#"'caf\xc3\xa9'"#), "café"); // UTF-8 bytes
        assert_eq!(s(r#"u'caf\xe9 \u20ac \U0001F600 \ud83d\ude00'"#), "café € 😀 😀");
        assert_eq!(s(r#"r'a\nb\'c'"#), "a\\nb\\'c");
        assert_eq!(s(r#"'unknown \q escape'"#), "unknown \\q escape");
        assert_eq!(s(r#"'''tri'ple'''"#), "tri'ple");
        assert_eq!(s("'é direct'"), "é direct");
        assert_eq!(s(r#"'a' "b" u'c'"#), "abc");
        assert_eq!(parse_python_literal("('a, b')").unwrap(), Str("a, b".into()));
        assert_eq!(parse_python_literal("((1, 2))").unwrap(), Tuple(vec![Int(1), Int(2)]));
        assert_eq!(parse_python_literal("(1, 2)").unwrap(), Tuple(vec![Int(1), Int(2)]));
        assert_eq!(
            parse_python_literal("[1, (2), ('x',)]").unwrap(),
            List(vec![Int(1), Int(2), Tuple(vec![Str("x".into())])])
        );
        assert_eq!(parse_python_literal("{\"k\": null, \"t\": true}").unwrap().get("t"), Some(&Bool(true)));
        for bad in [
            "",
            "[1, 2",
            "{'a' 1}",
            "{'a': 1",
            "'abc",
            "[1 2]",
            "1.2.3",
            "12abc",
            "{1: 2, 3}",
            "(",
            "'\\x4'",
            "-",
            "'a' 'b",
            "[[[[",
        ] {
            assert!(parse_python_literal(bad).is_err(), "{bad:?} should fail");
        }
        let deep = "[".repeat(10_000);
        assert!(parse_python_literal(&deep).unwrap_err().contains("nesting too deep"));
    }

    #[test]
    fn python_literal_parser_agrees_with_python_repr() {
        // Python writes repr(d) and json.dumps(d) for dicts of awkward strings; both must agree.
        let script = r##"
import json, random
random.seed(7)
pool = ["'", '"', "\\", "\n", "\t", "\r", "\x00", "\x07", "\x7f", "\x85", "\xa0", "\xad", "\xe9", "\xff",
        "\u20ac", "\u2028", "\ud7ff", "\U0001F600", "a", "b", " ", "&amp;", "{", "}", "[", "]", ":", ",", "#", "u'"]
for i in range(300):
    s = "".join(random.choice(pool) for _ in range(random.randint(0, 12)))
    d = {'asin': 'A%d' % i, 'title': s, 'n': [i, -i, i * 0.5, None, True, (i,)], "k'": {'x': s[:3]}}
    print(repr(d) + "\t" + json.dumps(d))
"##;
        let out = std::process::Command::new("python3")
            .env("PYTHONIOENCODING", "utf-8")
            .arg("-c")
            .arg(script)
            .output()
            .expect("python3");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        fn to_json(v: &PyValue) -> serde_json::Value {
            match v {
                PyValue::None => serde_json::Value::Null,
                PyValue::Bool(b) => (*b).into(),
                PyValue::Int(i) => (*i).into(),
                PyValue::Float(f) => serde_json::json!(f),
                PyValue::Str(s) => s.clone().into(),
                PyValue::List(xs) | PyValue::Tuple(xs) | PyValue::Set(xs) => xs.iter().map(to_json).collect(),
                PyValue::Dict(kv) => serde_json::Value::Object(
                    kv.iter().map(|(k, v)| (k.as_str().unwrap().to_string(), to_json(v))).collect(),
                ),
            }
        }
        let mut n = 0;
        for line in text.lines() {
            let (py, js) = line.split_once('\t').unwrap();
            let ours = to_json(&parse_python_literal(py).unwrap_or_else(|e| panic!("{py}: {e}")));
            let want: serde_json::Value = serde_json::from_str(js).unwrap();
            assert_eq!(ours, want, "{py}");
            n += 1;
        }
        assert_eq!(n, 300);
    }

    #[test]
    fn html_entities() {
        assert_eq!(decode_html_entities("A &amp; B &lt;3&gt; &quot;q&quot;"), "A & B <3> \"q\"");
        assert_eq!(decode_html_entities("Cr&egrave;me &#233;t&#xE9; &#39;"), "Crème été '");
        assert_eq!(
            decode_html_entities("&amp;amp; &unknown; & alone &#xZZ; &"),
            "&amp; &unknown; & alone &#xZZ; &"
        );
        assert_eq!(decode_html_entities("no&nbsp;break&shy;"), "no break");
        assert_eq!(decode_html_entities("&ndash no semicolon"), "&ndash no semicolon");
        assert_eq!(utf8_or_latin1(b"caf\xe9 \xc3\xa9t\xc3"), "café étÃ");
    }
}
