//! An [`LlmBackend`] for OpenAI-compatible `/v1/chat/completions` servers (llama.cpp's
//! `llama-server`, llama-cpp-python's server, vLLM, hosted APIs).
//!
//! * One or more base URLs, used round-robin per attempt (a retry goes to the next server).
//! * N requests in flight at once (std threads over one blocking client); answers come back
//!   in request order.
//! * Retries with exponential backoff on connection errors, timeouts, HTTP 5xx and 429
//!   (honouring `Retry-After`); other HTTP errors fail at once with the server's message.
//! * Decoding from [`GenerationSettings`]: `temperature`, `max_tokens`, `seed`.
//! * Guided output for requests with a [`Constraint`] ([`Guided`]): a GBNF `grammar` for
//!   llama.cpp servers, `guided_regex` / `guided_choice` for vLLM before 0.12, or the same inside
//!   `structured_outputs` for newer vLLM.

use crate::llm::{ChatRequest, Completion, Constraint, GenerationSettings, LlmBackend};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How a [`Constraint`] is sent to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guided {
    /// Constraints are not sent (the prompt alone asks for candidate titles).
    None,
    /// `grammar`: a GBNF grammar (llama.cpp `llama-server`, llama-cpp-python's server).
    LlamaGrammar,
    /// `guided_regex` (or `guided_choice` for one intent): vLLM before 0.12.
    Vllm,
    /// `structured_outputs: {regex | choice}`: vLLM 0.10.2 and later.
    VllmStructured,
}

impl Guided {
    pub fn as_str(self) -> &'static str {
        match self {
            Guided::None => "none",
            Guided::LlamaGrammar => "llama-grammar",
            Guided::Vllm => "vllm",
            Guided::VllmStructured => "vllm-structured",
        }
    }
}

impl FromStr for Guided {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "none" => Guided::None,
            "llama-grammar" | "grammar" | "llama" => Guided::LlamaGrammar,
            "vllm" => Guided::Vllm,
            "vllm-structured" => Guided::VllmStructured,
            other => bail!("unknown guided mode {other:?} (none, llama-grammar, vllm, vllm-structured)"),
        })
    }
}

impl std::fmt::Display for Guided {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Settings of an [`HttpBackend`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Server base URLs, e.g. `http://127.0.0.1:8080` or `https://host/v1`; the endpoint is
    /// `<base>/v1/chat/completions` (`/chat/completions` when the base ends in `/v1`).
    pub base_urls: Vec<String>,
    /// The `model` field of every request.
    pub model: String,
    /// Name of the environment variable holding the API key (sent as a bearer token).
    pub api_key_env: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
    pub connect_timeout_s: f64,
    /// Whole-request timeout (generation included).
    pub request_timeout_s: f64,
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// First backoff delay; doubles per retry up to `backoff_max_s`.
    pub backoff_initial_s: f64,
    pub backoff_max_s: f64,
    pub guided: Guided,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            base_urls: vec!["http://127.0.0.1:8080".into()],
            model: "default".into(),
            api_key_env: None,
            concurrency: 4,
            connect_timeout_s: 10.0,
            request_timeout_s: 600.0,
            max_retries: 5,
            backoff_initial_s: 0.5,
            backoff_max_s: 30.0,
            guided: Guided::None,
        }
    }
}

/// The chat-completions endpoint of a base URL.
pub fn endpoint(base: &str) -> String {
    let b = base.trim().trim_end_matches('/');
    if b.ends_with("/chat/completions") {
        b.to_string()
    } else if b.ends_with("/v1") {
        format!("{b}/chat/completions")
    } else {
        format!("{b}/v1/chat/completions")
    }
}

fn non_empty_choices(c: &Constraint) -> Result<Vec<&str>> {
    let mut out: Vec<&str> = Vec::new();
    for s in &c.choices {
        if !s.is_empty() && !out.contains(&s.as_str()) {
            out.push(s);
        }
    }
    if out.is_empty() {
        bail!("constraint without choices");
    }
    Ok(out)
}

/// `(min, max)` with `1 <= min <= max`.
fn bounds(c: &Constraint) -> (usize, usize) {
    let max = c.max_items.max(1);
    (c.min_items.clamp(1, max), max)
}

/// A GBNF string literal: `\`, `"` and control characters escaped; other text verbatim (UTF-8).
pub fn gbnf_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02X}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The GBNF grammar of a constraint: `choice (sep choice){min-1,max-1}`, written with nested
/// optional groups (no `{m,n}` repetition, which older parsers lack).
pub fn gbnf_grammar(c: &Constraint) -> Result<String> {
    let choices = non_empty_choices(c)?;
    let (min, max) = bounds(c);
    let mut root = String::from("root ::= item");
    for _ in 1..min {
        root.push_str(" sep item");
    }
    for _ in min..max {
        root.push_str(" (sep item");
    }
    for _ in min..max {
        root.push_str(")?");
    }
    let items: Vec<String> = choices.iter().map(|s| gbnf_literal(s)).collect();
    Ok(format!("{root}\nsep ::= {}\nitem ::= {}\n", gbnf_literal(&c.separator), items.join(" | ")))
}

/// A regex literal: the metacharacters `\.^$|?*+()[]{}` escaped, control characters as `\n`,
/// `\t`, `\r` or `\xHH`.
pub fn regex_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '.' | '^' | '$' | '|' | '?' | '*' | '+' | '(' | ')' | '[' | ']' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The regex of a constraint: `(c1|c2|…)(sep(c1|c2|…)){min-1,max-1}`.
pub fn guided_regex(c: &Constraint) -> Result<String> {
    let choices = non_empty_choices(c)?;
    let (min, max) = bounds(c);
    let alt = format!("({})", choices.iter().map(|s| regex_literal(s)).collect::<Vec<_>>().join("|"));
    if max == 1 {
        return Ok(alt);
    }
    Ok(format!("{alt}({}{alt}){{{},{}}}", regex_literal(&c.separator), min - 1, max - 1))
}

#[derive(Deserialize)]
struct ChatResponse {
    #[serde(default)]
    choices: Vec<ResponseChoice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct ResponseChoice {
    message: Option<ResponseMessage>,
    /// Some servers answer with plain-completion choices.
    text: Option<String>,
}

#[derive(Deserialize)]
struct ResponseMessage {
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<usize>,
    completion_tokens: Option<usize>,
}

fn snippet(s: &str) -> String {
    let t: String = s.chars().take(400).collect();
    if t.len() < s.len() {
        format!("{t}…")
    } else {
        t
    }
}

/// One failed attempt: retry or give up.
enum Failure {
    Retry(anyhow::Error, Option<Duration>),
    Fatal(anyhow::Error),
}

/// An OpenAI-compatible chat-completions client.
pub struct HttpBackend {
    config: HttpConfig,
    endpoints: Vec<String>,
    api_key: Option<String>,
    client: reqwest::blocking::Client,
    next: AtomicUsize,
}

impl HttpBackend {
    pub fn new(config: HttpConfig) -> Result<Self> {
        if config.base_urls.is_empty() {
            bail!("no server URL given");
        }
        if config.model.is_empty() {
            bail!("no model name given");
        }
        let api_key = match &config.api_key_env {
            Some(var) => Some(
                std::env::var(var)
                    .with_context(|| format!("API key variable {var} is not set (or not UTF-8)"))?,
            ),
            None => None,
        };
        let secs = |s: f64, what: &str| -> Result<Duration> {
            Duration::try_from_secs_f64(s)
                .map_err(|_| anyhow!("{what} must be a non-negative number of seconds, got {s}"))
        };
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(secs(config.connect_timeout_s, "connect timeout")?)
            .timeout(secs(config.request_timeout_s, "request timeout")?)
            .pool_max_idle_per_host(config.concurrency.max(1))
            .build()
            .context("building the HTTP client")?;
        secs(config.backoff_initial_s, "initial backoff")?;
        secs(config.backoff_max_s, "maximum backoff")?;
        let endpoints = config.base_urls.iter().map(|u| endpoint(u)).collect();
        Ok(Self { config, endpoints, api_key, client, next: AtomicUsize::new(0) })
    }

    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// The JSON body of one request.
    pub fn request_body(&self, request: &ChatRequest, settings: &GenerationSettings) -> Result<Value> {
        let mut messages = Vec::new();
        if !request.system.is_empty() {
            messages.push(json!({"role": "system", "content": request.system}));
        }
        messages.push(json!({"role": "user", "content": request.user}));
        let mut body = json!({
            "model": self.config.model,
            "messages": messages,
            "temperature": settings.temperature,
            "max_tokens": settings.max_new_tokens,
            "seed": settings.seed,
            "stream": false,
        });
        if let Some(c) = &request.constraint {
            let obj = body.as_object_mut().expect("object");
            let single = bounds(c).1 == 1;
            match self.config.guided {
                Guided::None => {}
                Guided::LlamaGrammar => {
                    obj.insert("grammar".into(), Value::String(gbnf_grammar(c)?));
                }
                Guided::Vllm if single => {
                    obj.insert("guided_choice".into(), json!(non_empty_choices(c)?));
                }
                Guided::Vllm => {
                    obj.insert("guided_regex".into(), Value::String(guided_regex(c)?));
                }
                Guided::VllmStructured if single => {
                    obj.insert("structured_outputs".into(), json!({"choice": non_empty_choices(c)?}));
                }
                Guided::VllmStructured => {
                    obj.insert("structured_outputs".into(), json!({"regex": guided_regex(c)?}));
                }
            }
        }
        Ok(body)
    }

    fn attempt(&self, url: &str, body: &Value) -> std::result::Result<Completion, Failure> {
        let mut req = self.client.post(url).json(body);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let resp = match req.send() {
            Ok(r) => r,
            Err(e) if e.is_builder() => return Err(Failure::Fatal(anyhow!("{url}: {e}"))),
            Err(e) => return Err(Failure::Retry(anyhow!("{url}: {e}"), None)),
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .and_then(|s| Duration::try_from_secs_f64(s).ok());
        let text = match resp.text() {
            Ok(t) => t,
            Err(e) => return Err(Failure::Retry(anyhow!("{url}: reading the answer: {e}"), None)),
        };
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(Failure::Retry(anyhow!("{url}: HTTP {status}: {}", snippet(&text)), retry_after));
        }
        if !status.is_success() {
            return Err(Failure::Fatal(anyhow!("{url}: HTTP {status}: {}", snippet(&text))));
        }
        let parsed: ChatResponse = serde_json::from_str(&text)
            .map_err(|e| Failure::Fatal(anyhow!("{url}: not a chat completion ({e}): {}", snippet(&text))))?;
        let choice =
            parsed.choices.into_iter().next().ok_or_else(|| {
                Failure::Fatal(anyhow!("{url}: answer without choices: {}", snippet(&text)))
            })?;
        let text_out = choice.message.and_then(|m| m.content).or(choice.text).unwrap_or_default();
        let usage = parsed.usage;
        Ok(Completion {
            text: text_out,
            prompt_tokens: usage.as_ref().and_then(|u| u.prompt_tokens).unwrap_or(0),
            completion_tokens: usage.as_ref().and_then(|u| u.completion_tokens).unwrap_or(0),
        })
    }

    fn backoff(&self, retry: usize, retry_after: Option<Duration>) -> Duration {
        let cap = Duration::from_secs_f64(self.config.backoff_max_s);
        let exp = Duration::from_secs_f64(self.config.backoff_initial_s)
            .saturating_mul(1u32.checked_shl(retry.min(30) as u32).unwrap_or(u32::MAX));
        exp.max(retry_after.unwrap_or_default()).min(cap)
    }

    /// One request with retries, each attempt on the next server in turn.
    pub fn complete(&self, request: &ChatRequest, settings: &GenerationSettings) -> Result<Completion> {
        let body = self.request_body(request, settings)?;
        let mut last = None;
        for attempt in 0..=self.config.max_retries {
            let url = &self.endpoints[self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len()];
            match self.attempt(url, &body) {
                Ok(c) => return Ok(c),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(e, after)) => {
                    if attempt < self.config.max_retries {
                        let wait = self.backoff(attempt, after);
                        tracing::warn!(
                            "{e:#}; retry {} of {} in {wait:?}",
                            attempt + 1,
                            self.config.max_retries
                        );
                        std::thread::sleep(wait);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last
            .expect("at least one attempt")
            .context(format!("gave up after {} attempts", self.config.max_retries + 1)))
    }
}

impl LlmBackend for HttpBackend {
    /// The model name, plus the guided mode when constraints are sent (answers differ).
    fn model_id(&self) -> String {
        match self.config.guided {
            Guided::None => self.config.model.clone(),
            g => format!("{}+{}", self.config.model, g.as_str()),
        }
    }

    fn generate(
        &mut self,
        requests: &[ChatRequest],
        settings: &GenerationSettings,
    ) -> Result<Vec<Completion>> {
        let n = requests.len();
        let results: Vec<Mutex<Option<Result<Completion>>>> = (0..n).map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let this = &*self;
        std::thread::scope(|s| {
            for _ in 0..this.config.concurrency.clamp(1, n.max(1)) {
                s.spawn(|| loop {
                    if failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let r = this
                        .complete(&requests[i], settings)
                        .with_context(|| format!("request {} of {n}", i + 1));
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    *results[i].lock().expect("result slot") = Some(r);
                });
            }
        });
        let mut out = Vec::with_capacity(n);
        for slot in results {
            match slot.into_inner().expect("result slot") {
                Some(Ok(c)) => out.push(c),
                Some(Err(e)) => return Err(e),
                None => {
                    // Not attempted because an earlier request failed; report that failure.
                    continue;
                }
            }
        }
        if out.len() != n {
            bail!("{} of {n} requests were not answered", n - out.len());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constraint(choices: &[&str], min: usize, max: usize) -> Constraint {
        Constraint {
            choices: choices.iter().map(|s| s.to_string()).collect(),
            min_items: min,
            max_items: max,
            separator: "; ".into(),
        }
    }

    #[test]
    fn endpoints() {
        assert_eq!(endpoint("http://h:1"), "http://h:1/v1/chat/completions");
        assert_eq!(endpoint("http://h:1/"), "http://h:1/v1/chat/completions");
        assert_eq!(endpoint("https://api.x/v1/"), "https://api.x/v1/chat/completions");
        assert_eq!(endpoint("http://h/v1/chat/completions"), "http://h/v1/chat/completions");
    }

    #[test]
    fn gbnf_grammar_text_and_escaping() {
        let c = constraint(&["Blue \"Pink\"", "a\\b", "Crème\nx", "", "Blue \"Pink\""], 1, 3);
        assert_eq!(
            gbnf_grammar(&c).unwrap(),
            "root ::= item (sep item (sep item)?)?\nsep ::= \"; \"\nitem ::= \"Blue \\\"Pink\\\"\" | \"a\\\\b\" | \"Crème\\nx\"\n"
        );
        let c = constraint(&["A", "B"], 2, 2);
        assert_eq!(
            gbnf_grammar(&c).unwrap(),
            "root ::= item sep item\nsep ::= \"; \"\nitem ::= \"A\" | \"B\"\n"
        );
        assert_eq!(gbnf_literal("\u{1}"), "\"\\x01\"");
        assert!(gbnf_grammar(&constraint(&[""], 1, 1)).is_err());
    }

    #[test]
    fn regex_text_and_escaping() {
        let c = constraint(&["Toy Story (1995)", "a.b|c", "x+y*"], 1, 3);
        assert_eq!(
            guided_regex(&c).unwrap(),
            "(Toy Story \\(1995\\)|a\\.b\\|c|x\\+y\\*)(; (Toy Story \\(1995\\)|a\\.b\\|c|x\\+y\\*)){0,2}"
        );
        assert_eq!(guided_regex(&constraint(&["A", "B"], 1, 1)).unwrap(), "(A|B)");
        assert_eq!(guided_regex(&constraint(&["A"], 2, 4)).unwrap(), "(A)(; (A)){1,3}");
        assert_eq!(regex_literal("[x]{2}^$\\"), "\\[x\\]\\{2\\}\\^\\$\\\\");
    }

    #[test]
    fn guided_modes_parse_and_backoff_grows_to_the_cap() {
        assert_eq!("llama-grammar".parse::<Guided>().unwrap(), Guided::LlamaGrammar);
        assert_eq!("vllm-structured".parse::<Guided>().unwrap(), Guided::VllmStructured);
        assert!("grammarz".parse::<Guided>().is_err());
        let b =
            HttpBackend::new(HttpConfig { backoff_initial_s: 0.5, backoff_max_s: 3.0, ..Default::default() })
                .unwrap();
        assert_eq!(b.backoff(0, None), Duration::from_millis(500));
        assert_eq!(b.backoff(2, None), Duration::from_secs(2));
        assert_eq!(b.backoff(3, None), Duration::from_secs(3));
        assert_eq!(b.backoff(60, None), Duration::from_secs(3));
        assert_eq!(b.backoff(0, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert_eq!(b.model_id(), "default");
    }
}
