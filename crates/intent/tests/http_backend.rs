//! The OpenAI-compatible HTTP backend against real HTTP servers on 127.0.0.1 (a small
//! HTTP/1.1 server written on std::net in this file), plus an optional run against a real
//! llama.cpp-compatible server (`DMSREC_LLAMA_SERVER_URL`).

use dmsrec_data::{Catalog, ItemInfo};
use dmsrec_intent::http::{gbnf_grammar, guided_regex, Guided, HttpBackend, HttpConfig};
use dmsrec_intent::llm::{ChatRequest, Constraint, GenerationSettings, LlmBackend};
use dmsrec_intent::parse::{parse_answer, MatchKind, ParseOptions};
use dmsrec_intent::prompt::{PromptBuilder, PromptOptions, PromptTemplate};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the test server answers: status, JSON body, extra headers, delay before answering.
struct Reply {
    status: u16,
    body: String,
    headers: Vec<(String, String)>,
    delay: Duration,
}

impl Reply {
    fn ok(content: &str) -> Self {
        let body = json!({
            "id": "x", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
        });
        Self { status: 200, body: body.to_string(), headers: vec![], delay: Duration::ZERO }
    }

    fn status(status: u16, msg: &str) -> Self {
        Self {
            status,
            body: json!({"error": {"message": msg}}).to_string(),
            headers: vec![],
            delay: Duration::ZERO,
        }
    }
}

struct Received {
    body: Value,
    headers: Vec<(String, String)>,
    path: String,
}

type Handler = dyn Fn(usize, &Value) -> Reply + Send + Sync;

struct TestServer {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    in_flight_max: Arc<AtomicUsize>,
}

impl TestServer {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn bodies(&self) -> Vec<Value> {
        self.received.lock().unwrap().iter().map(|r| r.body.clone()).collect()
    }

    fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Received> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = Vec::new();
    let mut len = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
        if k == "content-length" {
            len = v.parse().ok()?;
        }
        headers.push((k, v));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    Some(Received { body: serde_json::from_slice(&body).unwrap_or(Value::Null), headers, path })
}

/// Starts a server on 127.0.0.1 (one thread per connection, `Connection: close`).
fn serve(handler: Arc<Handler>) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let counter = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let in_flight_max = Arc::new(AtomicUsize::new(0));
    let (rec, inf, infmax) = (received.clone(), in_flight.clone(), in_flight_max.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (handler, rec, counter, inf, infmax) =
                (handler.clone(), rec.clone(), counter.clone(), inf.clone(), infmax.clone());
            std::thread::spawn(move || {
                let Some(req) = read_request(&mut stream) else { return };
                let now = inf.fetch_add(1, Ordering::SeqCst) + 1;
                infmax.fetch_max(now, Ordering::SeqCst);
                let idx = counter.fetch_add(1, Ordering::SeqCst);
                let body = req.body.clone();
                rec.lock().unwrap().push(req);
                let reply = handler(idx, &body);
                std::thread::sleep(reply.delay);
                inf.fetch_sub(1, Ordering::SeqCst);
                let mut head = format!(
                    "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                    reply.status,
                    reply.body.len()
                );
                for (k, v) in &reply.headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(reply.body.as_bytes());
                let _ = stream.flush();
            });
        }
    });
    TestServer { addr, received, in_flight_max }
}

fn config(urls: Vec<String>) -> HttpConfig {
    HttpConfig {
        base_urls: urls,
        model: "qwen2.5-7b-instruct".into(),
        concurrency: 1,
        connect_timeout_s: 2.0,
        request_timeout_s: 10.0,
        max_retries: 3,
        backoff_initial_s: 0.01,
        backoff_max_s: 0.05,
        ..Default::default()
    }
}

fn request(user: &str, constraint: Option<Constraint>) -> ChatRequest {
    ChatRequest {
        system: "You are tasked with inferring the user's intents.".into(),
        user: user.into(),
        constraint,
    }
}

fn constraint() -> Constraint {
    Constraint {
        choices: vec!["Olay Regenerist".into(), "Blue \"Pink\" Brush (2)".into()],
        min_items: 1,
        max_items: 2,
        separator: "; ".into(),
    }
}

fn user_of(body: &Value) -> String {
    body["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_string()
}

#[test]
fn http_request_json_and_canned_answer() {
    let server = serve(Arc::new(|_, _| Reply::ok("Olay Regenerist; Zia")));
    let mut b = HttpBackend::new(config(vec![server.url()])).unwrap();
    let settings = GenerationSettings { max_new_tokens: 77, temperature: 0.0, seed: 42 };
    let out =
        b.generate(&[request("The order in which users click", Some(constraint()))], &settings).unwrap();
    assert_eq!(out[0].text, "Olay Regenerist; Zia");
    assert_eq!((out[0].prompt_tokens, out[0].completion_tokens), (11, 3));
    let r = &server.received.lock().unwrap()[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert!(r.headers.iter().any(|(k, v)| k == "content-type" && v.contains("application/json")));
    assert!(!r.headers.iter().any(|(k, _)| k == "authorization"));
    let body = &r.body;
    assert_eq!(body["model"], "qwen2.5-7b-instruct");
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "You are tasked with inferring the user's intents."},
            {"role": "user", "content": "The order in which users click"}
        ])
    );
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(body["max_tokens"], 77);
    assert_eq!(body["seed"], 42);
    assert_eq!(body["stream"], false);
    // guided: none sends no constraint fields.
    for k in ["grammar", "guided_regex", "guided_choice", "structured_outputs"] {
        assert!(body.get(k).is_none(), "{k} sent without guided decoding");
    }
    assert_eq!(b.model_id(), "qwen2.5-7b-instruct");
}

#[test]
fn http_guided_fields_per_mode() {
    let server = serve(Arc::new(|_, _| Reply::ok("Olay Regenerist")));
    let s = GenerationSettings::default();
    let c = constraint();
    let mut one = constraint();
    one.max_items = 1;

    let mut b =
        HttpBackend::new(HttpConfig { guided: Guided::LlamaGrammar, ..config(vec![server.url()]) }).unwrap();
    assert_eq!(b.model_id(), "qwen2.5-7b-instruct+llama-grammar");
    b.generate(&[request("a", Some(c.clone())), request("b", None)], &s).unwrap();
    let mut b = HttpBackend::new(HttpConfig { guided: Guided::Vllm, ..config(vec![server.url()]) }).unwrap();
    b.generate(&[request("c", Some(c.clone())), request("d", Some(one.clone()))], &s).unwrap();
    let mut b = HttpBackend::new(HttpConfig { guided: Guided::VllmStructured, ..config(vec![server.url()]) })
        .unwrap();
    b.generate(&[request("e", Some(c.clone())), request("f", Some(one.clone()))], &s).unwrap();

    let bodies = server.bodies();
    assert_eq!(bodies.len(), 6);
    let grammar = gbnf_grammar(&c).unwrap();
    assert!(grammar.contains("item ::= \"Olay Regenerist\" | \"Blue \\\"Pink\\\" Brush (2)\""), "{grammar}");
    assert_eq!(bodies[0]["grammar"], grammar);
    assert!(bodies[1].get("grammar").is_none(), "grammar sent for an unconstrained request");
    assert_eq!(bodies[2]["guided_regex"], guided_regex(&c).unwrap());
    assert_eq!(
        bodies[2]["guided_regex"],
        "(Olay Regenerist|Blue \"Pink\" Brush \\(2\\))(; (Olay Regenerist|Blue \"Pink\" Brush \\(2\\))){0,1}"
    );
    assert_eq!(bodies[3]["guided_choice"], json!(["Olay Regenerist", "Blue \"Pink\" Brush (2)"]));
    assert_eq!(bodies[4]["structured_outputs"], json!({"regex": guided_regex(&c).unwrap()}));
    assert_eq!(
        bodies[5]["structured_outputs"],
        json!({"choice": ["Olay Regenerist", "Blue \"Pink\" Brush (2)"]})
    );
}

#[test]
fn http_retries_503_and_429_then_succeeds() {
    let server = serve(Arc::new(|i, _| match i {
        0 => Reply::status(503, "loading model"),
        1 => Reply { headers: vec![("Retry-After".into(), "0".into())], ..Reply::status(429, "slow down") },
        _ => Reply::ok("fine"),
    }));
    let mut b = HttpBackend::new(config(vec![server.url()])).unwrap();
    let out = b.generate(&[request("x", None)], &GenerationSettings::default()).unwrap();
    assert_eq!(out[0].text, "fine");
    assert_eq!(server.count(), 3, "one request, two retries");
    let bodies = server.bodies();
    assert!(bodies.iter().all(|b| b == &bodies[0]), "retries resend the same request");
}

#[test]
fn http_client_errors_fail_at_once_and_retries_are_bounded() {
    let server = serve(Arc::new(|_, _| Reply::status(400, "bad grammar")));
    let mut b = HttpBackend::new(config(vec![server.url()])).unwrap();
    let err = format!("{:#}", b.generate(&[request("x", None)], &GenerationSettings::default()).unwrap_err());
    assert!(err.contains("400") && err.contains("bad grammar"), "{err}");
    assert_eq!(server.count(), 1, "4xx is not retried");

    let server = serve(Arc::new(|_, _| Reply::status(500, "boom")));
    let mut b = HttpBackend::new(config(vec![server.url()])).unwrap();
    let err = format!("{:#}", b.generate(&[request("x", None)], &GenerationSettings::default()).unwrap_err());
    assert!(err.contains("gave up after 4 attempts") && err.contains("500"), "{err}");
    assert_eq!(server.count(), 4);

    let server = serve(Arc::new(|_, _| Reply {
        status: 200,
        body: "{\"nope\": 1".into(),
        headers: vec![],
        delay: Duration::ZERO,
    }));
    let mut b = HttpBackend::new(config(vec![server.url()])).unwrap();
    let err = format!("{:#}", b.generate(&[request("x", None)], &GenerationSettings::default()).unwrap_err());
    assert!(err.contains("not a chat completion"), "{err}");
}

#[test]
fn http_round_robin_over_two_servers() {
    let a = serve(Arc::new(|_, body| Reply::ok(&format!("A:{}", user_of(body)))));
    let b = serve(Arc::new(|_, body| Reply::ok(&format!("B:{}", user_of(body)))));
    let mut backend = HttpBackend::new(config(vec![a.url(), b.url() + "/v1/"])).unwrap();
    let reqs: Vec<ChatRequest> = (0..6).map(|i| request(&i.to_string(), None)).collect();
    let out = backend.generate(&reqs, &GenerationSettings::default()).unwrap();
    let texts: Vec<&str> = out.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, vec!["A:0", "B:1", "A:2", "B:3", "A:4", "B:5"]);
    assert_eq!((a.count(), b.count()), (3, 3));
    assert_eq!(b.received.lock().unwrap()[0].path, "/v1/chat/completions");
}

#[test]
fn http_dead_server_in_the_rotation_is_skipped_by_retries() {
    let live = serve(Arc::new(|_, body| Reply::ok(&user_of(body))));
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    }; // listener dropped: connections are refused
    let mut b = HttpBackend::new(config(vec![dead, live.url()])).unwrap();
    let reqs: Vec<ChatRequest> = (0..4).map(|i| request(&i.to_string(), None)).collect();
    let out = b.generate(&reqs, &GenerationSettings::default()).unwrap();
    assert_eq!(out.iter().map(|c| c.text.clone()).collect::<Vec<_>>(), vec!["0", "1", "2", "3"]);
    assert_eq!(live.count(), 4);
}

#[test]
fn http_timeout_is_retried() {
    let server = serve(Arc::new(|i, _| {
        let mut r = Reply::ok("late but fine");
        if i == 0 {
            r.delay = Duration::from_millis(1500);
        }
        r
    }));
    let mut b =
        HttpBackend::new(HttpConfig { request_timeout_s: 0.5, ..config(vec![server.url()]) }).unwrap();
    let out = b.generate(&[request("x", None)], &GenerationSettings::default()).unwrap();
    assert_eq!(out[0].text, "late but fine");
    assert_eq!(server.count(), 2);
}

#[test]
fn http_concurrent_requests_keep_their_order() {
    // Early requests answer last, so completion order is the reverse of request order.
    let server = serve(Arc::new(|_, body| {
        let u = user_of(body);
        let i: u64 = u.parse().unwrap();
        Reply { delay: Duration::from_millis(20 * (12 - i)), ..Reply::ok(&format!("answer {u}")) }
    }));
    let mut b = HttpBackend::new(HttpConfig { concurrency: 4, ..config(vec![server.url()]) }).unwrap();
    let reqs: Vec<ChatRequest> = (0..12).map(|i| request(&i.to_string(), None)).collect();
    let out = b.generate(&reqs, &GenerationSettings::default()).unwrap();
    let want: Vec<String> = (0..12).map(|i| format!("answer {i}")).collect();
    assert_eq!(out.iter().map(|c| c.text.clone()).collect::<Vec<_>>(), want);
    let peak = server.in_flight_max.load(Ordering::SeqCst);
    assert!(peak > 1 && peak <= 4, "peak in flight {peak}");
    assert!(b.generate(&[], &GenerationSettings::default()).unwrap().is_empty());
}

#[test]
fn http_api_key_from_env_var() {
    let server = serve(Arc::new(|_, _| Reply::ok("ok")));
    std::env::set_var("DMSREC_HTTP_TEST_KEY", "sk-test-123");
    let mut b = HttpBackend::new(HttpConfig {
        api_key_env: Some("DMSREC_HTTP_TEST_KEY".into()),
        ..config(vec![server.url()])
    })
    .unwrap();
    b.generate(&[request("x", None)], &GenerationSettings::default()).unwrap();
    let r = &server.received.lock().unwrap()[0];
    assert!(r.headers.iter().any(|(k, v)| k == "authorization" && v == "Bearer sk-test-123"));
    let err = HttpBackend::new(HttpConfig {
        api_key_env: Some("DMSREC_HTTP_TEST_KEY_UNSET_XYZ".into()),
        ..config(vec![server.url()])
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("DMSREC_HTTP_TEST_KEY_UNSET_XYZ"));
}

/// Real requests against a llama.cpp-compatible server (e.g. `python -m llama_cpp.server`),
/// when `DMSREC_LLAMA_SERVER_URL` is set; `DMSREC_LLAMA_SERVER_MODEL` names the model
/// (default `default`).
#[test]
fn http_llama_cpp_server() {
    let Ok(url) = std::env::var("DMSREC_LLAMA_SERVER_URL") else {
        eprintln!("################################################################");
        eprintln!("## SKIP http_llama_cpp_server: DMSREC_LLAMA_SERVER_URL is not set");
        eprintln!("################################################################");
        return;
    };
    let model = std::env::var("DMSREC_LLAMA_SERVER_MODEL").unwrap_or_else(|_| "default".into());
    let titles = [
        "Zia Bamboo Exfoliant, 1.6 Ounce Bottles (Pack of 12)",
        "Remington S1051 Salon Quality, Professional Ceramic Hair Straightener",
        "Sunburnt Therapeutic After Sun Relief, 6-Ounce Tube",
        "Vaseline Men Body and Face Lotion , 20.3 Ounce Bottle (Pack of 3)",
        "Cotz Pediatric Spf 40, 3.5 Ounce",
        "Olay Regenerist 14-Day Skin Intervention",
        "Max Factor Panstik Foundation - 13 Nouveau Beige",
        "MoroccanOil Hydrating Styling Cream, 10.2-Ounce Bottle",
        "Blue &amp; Pink \"Wet\" Brush; Value Pack",
        "Jane Carter Solution Wrap and Roll, 8 Oz",
    ];
    let catalog = Catalog::new(titles.iter().map(|t| ItemInfo::new(*t)).collect());
    let session = [1u32, 2, 3, 4, 5];
    let candidates = [5u32, 6, 7, 8, 9, 10, 3];
    let settings = GenerationSettings { max_new_tokens: 96, temperature: 0.0, seed: 2024 };
    let opts = PromptOptions { max_intents: 3, ..Default::default() };
    let builder = PromptBuilder::new(PromptTemplate::paper(), opts).unwrap();
    let p = builder.render(&catalog, &session, &candidates);
    let cfg = HttpConfig {
        base_urls: vec![url.clone()],
        model,
        concurrency: 2,
        request_timeout_s: 600.0,
        ..Default::default()
    };

    // Unconstrained: the answer must come back; its parse is reported, not asserted.
    let mut free = HttpBackend::new(cfg.clone()).unwrap();
    let out = free.generate(std::slice::from_ref(&p.request), &settings).unwrap();
    let parsed = parse_answer(&out[0].text, &p.candidates, &p.session, &ParseOptions::default());
    eprintln!("{url} unconstrained answer: {:?} -> {:?}", out[0].text, parsed.intents);
    assert!(out[0].completion_tokens > 0 || !out[0].text.is_empty());

    // Guided by the GBNF grammar: every intent is an exact candidate, 1..=3 of them.
    let mut guided = HttpBackend::new(HttpConfig { guided: Guided::LlamaGrammar, ..cfg }).unwrap();
    let outs = guided.generate(&[p.request.clone(), p.request.clone()], &settings).unwrap();
    for o in &outs {
        let parsed = parse_answer(&o.text, &p.candidates, &p.session, &ParseOptions::default());
        eprintln!("{url} grammar answer: {:?} -> {:?}", o.text, parsed.intents);
        assert!((1..=3).contains(&parsed.intents.len()), "{:?}", o.text);
        assert!(parsed.intents.iter().all(|i| i.kind == MatchKind::Exact), "{:?}", o.text);
    }
    assert_eq!(outs[0].text, outs[1].text, "temperature 0 must be deterministic");
}
