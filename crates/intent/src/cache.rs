//! Every LLM answer in SQLite, so a killed or interrupted run loses nothing.
//!
//! Key: (model id, decoding settings as JSON, prompt hash) → answer text, token counts and the
//! time it was stored. The database runs in WAL mode with `synchronous=FULL`; writes go in
//! small transactions ([`PUT_MANY_CHUNK`] answers at most), so a crash loses at most the
//! transaction in flight and never corrupts what was committed.

use crate::llm::{ChatRequest, Completion, GenerationSettings, LlmBackend};
use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Answers written per transaction by [`AnswerCache::put_many`].
pub const PUT_MANY_CHUNK: usize = 64;
const SCHEMA_VERSION: i64 = 1;

/// A stored answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedAnswer {
    pub completion: Completion,
    /// Unix time (seconds) it was stored.
    pub created_at: i64,
}

/// The cache key part that describes decoding: the settings as JSON (field order fixed).
pub fn settings_json(settings: &GenerationSettings) -> String {
    serde_json::to_string(settings).expect("generation settings serialize")
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An SQLite file of LLM answers.
pub struct AnswerCache {
    conn: Connection,
    path: PathBuf,
}

impl AnswerCache {
    /// Opens (creating if needed) the cache file and its table.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let conn =
            Connection::open(path).with_context(|| format!("opening answer cache {}", path.display()))?;
        let ctx = || format!("setting up answer cache {}", path.display());
        conn.busy_timeout(Duration::from_secs(30)).with_context(ctx)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).with_context(ctx)?;
        if !mode.eq_ignore_ascii_case("wal") {
            bail!("answer cache {}: could not switch to WAL mode (got {mode})", path.display());
        }
        conn.pragma_update(None, "synchronous", "FULL").with_context(ctx)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS answers (
                 model TEXT NOT NULL,
                 settings TEXT NOT NULL,
                 prompt_hash TEXT NOT NULL,
                 answer TEXT NOT NULL,
                 prompt_tokens INTEGER NOT NULL,
                 completion_tokens INTEGER NOT NULL,
                 created_at INTEGER NOT NULL,
                 PRIMARY KEY (model, settings, prompt_hash)
             ) WITHOUT ROWID;",
        )
        .with_context(ctx)?;
        let version: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0))
            .optional()
            .with_context(ctx)?;
        match version {
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                    [SCHEMA_VERSION.to_string()],
                )
                .with_context(ctx)?;
            }
            Some(v) if v == SCHEMA_VERSION.to_string() => {}
            Some(v) => bail!(
                "answer cache {}: schema version {v}, this build reads {SCHEMA_VERSION}",
                path.display()
            ),
        }
        Ok(Self { conn, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored answer of one key.
    pub fn get(&self, model: &str, settings: &str, prompt_hash: &str) -> Result<Option<CachedAnswer>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT answer, prompt_tokens, completion_tokens, created_at FROM answers
                 WHERE model = ?1 AND settings = ?2 AND prompt_hash = ?3",
            )
            .context("answer cache: preparing lookup")?;
        stmt.query_row(params![model, settings, prompt_hash], |r| {
            Ok(CachedAnswer {
                completion: Completion {
                    text: r.get(0)?,
                    prompt_tokens: r.get::<_, i64>(1)? as usize,
                    completion_tokens: r.get::<_, i64>(2)? as usize,
                },
                created_at: r.get(3)?,
            })
        })
        .optional()
        .with_context(|| format!("answer cache {}: reading {prompt_hash}", self.path.display()))
    }

    /// Answers of many prompt hashes (same model and settings), in order.
    pub fn get_many(
        &self,
        model: &str,
        settings: &str,
        hashes: &[String],
    ) -> Result<Vec<Option<Completion>>> {
        hashes.iter().map(|h| Ok(self.get(model, settings, h)?.map(|a| a.completion))).collect()
    }

    fn insert(
        conn: &Connection,
        model: &str,
        settings: &str,
        hash: &str,
        c: &Completion,
        now: i64,
    ) -> rusqlite::Result<()> {
        let mut stmt = conn.prepare_cached(
            "INSERT INTO answers (model, settings, prompt_hash, answer, prompt_tokens, completion_tokens, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (model, settings, prompt_hash) DO UPDATE SET
                 answer = excluded.answer, prompt_tokens = excluded.prompt_tokens,
                 completion_tokens = excluded.completion_tokens, created_at = excluded.created_at",
        )?;
        stmt.execute(params![
            model,
            settings,
            hash,
            c.text,
            c.prompt_tokens as i64,
            c.completion_tokens as i64,
            now
        ])?;
        Ok(())
    }

    /// Stores one answer (replacing an older one of the same key), committed on return.
    pub fn put(&self, model: &str, settings: &str, prompt_hash: &str, completion: &Completion) -> Result<()> {
        Self::insert(&self.conn, model, settings, prompt_hash, completion, now_unix())
            .with_context(|| format!("answer cache {}: writing {prompt_hash}", self.path.display()))
    }

    /// Stores many answers, [`PUT_MANY_CHUNK`] per transaction; each chunk is committed
    /// before the next starts.
    pub fn put_many(&mut self, model: &str, settings: &str, entries: &[(String, Completion)]) -> Result<()> {
        let now = now_unix();
        for chunk in entries.chunks(PUT_MANY_CHUNK) {
            let tx = self.conn.transaction().context("answer cache: starting a transaction")?;
            for (hash, c) in chunk {
                Self::insert(&tx, model, settings, hash, c, now)
                    .with_context(|| format!("answer cache {}: writing {hash}", self.path.display()))?;
            }
            tx.commit().with_context(|| format!("answer cache {}: committing", self.path.display()))?;
        }
        Ok(())
    }

    /// Number of stored answers.
    pub fn len(&self) -> Result<usize> {
        let n: i64 = self.conn.query_row("SELECT COUNT(*) FROM answers", [], |r| r.get(0))?;
        Ok(n as usize)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// `PRAGMA integrity_check`: `"ok"` for a sound file.
    pub fn integrity_check(&self) -> Result<String> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let rows: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        Ok(rows.join("\n"))
    }
}

/// The outcome of [`generate_cached`].
#[derive(Debug, Clone, PartialEq)]
pub struct CachedRun {
    /// One completion per request, in order.
    pub completions: Vec<Completion>,
    /// Answers found in the cache.
    pub hits: usize,
    /// Answers generated (and stored) by this call.
    pub generated: usize,
}

/// Answers every request, from the cache where possible; the rest are generated `chunk` at a
/// time and each chunk is stored before the next is generated, so an interrupted run resumes
/// where it stopped. The key is (`backend.model_id()`, [`settings_json`], prompt hash).
pub fn generate_cached(
    backend: &mut dyn LlmBackend,
    cache: &mut AnswerCache,
    requests: &[ChatRequest],
    settings: &GenerationSettings,
    chunk: usize,
) -> Result<CachedRun> {
    let model = backend.model_id();
    let settings_key = settings_json(settings);
    let hashes: Vec<String> = requests.iter().map(crate::prompt::prompt_hash).collect();
    let mut out = cache.get_many(&model, &settings_key, &hashes)?;
    let hits = out.iter().filter(|c| c.is_some()).count();
    let missing: Vec<usize> = (0..requests.len()).filter(|&i| out[i].is_none()).collect();
    let mut generated = 0;
    for (n, idx) in missing.chunks(chunk.max(1)).enumerate() {
        let batch: Vec<ChatRequest> = idx.iter().map(|&i| requests[i].clone()).collect();
        let answers = backend
            .generate(&batch, settings)
            .with_context(|| format!("{model}: generating chunk {} ({} prompts)", n + 1, batch.len()))?;
        if answers.len() != batch.len() {
            bail!("{model}: {} answers for {} prompts", answers.len(), batch.len());
        }
        let entries: Vec<(String, Completion)> =
            idx.iter().zip(&answers).map(|(&i, c)| (hashes[i].clone(), c.clone())).collect();
        cache.put_many(&model, &settings_key, &entries)?;
        for (&i, c) in idx.iter().zip(answers) {
            out[i] = Some(c);
        }
        generated += idx.len();
        tracing::info!("{model}: {generated}/{} new answers stored ({hits} from cache)", missing.len());
    }
    let completions = out.into_iter().map(|c| c.expect("every request answered")).collect();
    Ok(CachedRun { completions, hits, generated })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    fn completion(k: usize) -> Completion {
        Completion {
            text: format!("answer {k}; {}", "é".repeat(k % 37)),
            prompt_tokens: k,
            completion_tokens: 2 * k + 1,
        }
    }

    #[test]
    fn write_reopen_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/answers.sqlite");
        let s = settings_json(&GenerationSettings::default());
        {
            let mut c = AnswerCache::open(&path).unwrap();
            assert!(c.is_empty().unwrap());
            c.put("m1", &s, "h0", &completion(0)).unwrap();
            let many: Vec<(String, Completion)> =
                (1..200).map(|k| (format!("h{k}"), completion(k))).collect();
            c.put_many("m1", &s, &many).unwrap();
            c.put("m2", &s, "h0", &completion(7)).unwrap();
            // Replacing keeps one row per key.
            c.put("m1", &s, "h5", &completion(5)).unwrap();
            assert_eq!(c.len().unwrap(), 201);
        }
        let c = AnswerCache::open(&path).unwrap();
        assert_eq!(c.integrity_check().unwrap(), "ok");
        for k in 0..200 {
            let got = c.get("m1", &s, &format!("h{k}")).unwrap().unwrap();
            assert_eq!(got.completion, completion(k));
            assert!(got.created_at > 1_600_000_000);
        }
        assert_eq!(c.get("m2", &s, "h0").unwrap().unwrap().completion, completion(7));
        assert_eq!(c.get("m1", &s, "h200").unwrap(), None);
        let other = settings_json(&GenerationSettings { temperature: 0.7, ..Default::default() });
        assert_eq!(c.get("m1", &other, "h0").unwrap(), None);
        let hashes = vec!["h3".to_string(), "nope".to_string()];
        assert_eq!(c.get_many("m1", &s, &hashes).unwrap(), vec![Some(completion(3)), None]);
        let mode: String = c.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    const CHILD_ENV: &str = "DMSREC_CACHE_KILL_CHILD_DB";

    /// Not a test of its own: the writer process of `killed_writer_keeps_every_committed_answer`
    /// (does nothing unless started by it).
    #[test]
    fn kill_child_writer() {
        let Ok(path) = std::env::var(CHILD_ENV) else { return };
        let mut cache = AnswerCache::open(Path::new(&path)).unwrap();
        let s = settings_json(&GenerationSettings::default());
        let mut out = std::io::stdout();
        let start = std::time::Instant::now();
        let mut k = 0usize;
        // Bounded, in case the parent dies before killing us.
        while start.elapsed() < Duration::from_secs(120) {
            if k.is_multiple_of(3) {
                cache.put("m", &s, &format!("h{k}"), &completion(k)).unwrap();
                k += 1;
            } else {
                let many: Vec<(String, Completion)> =
                    (k..k + 150).map(|j| (format!("h{j}"), completion(j))).collect();
                cache.put_many("m", &s, &many).unwrap();
                k += 150;
            }
            writeln!(out, "committed {k}").unwrap();
            out.flush().unwrap();
        }
    }

    #[test]
    fn killed_writer_keeps_every_committed_answer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("answers.sqlite");
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .args(["--exact", "cache::tests::kill_child_writer", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut committed = 0usize;
        for line in lines.by_ref() {
            if let Some(n) = line.unwrap().strip_prefix("committed ") {
                committed = n.trim().parse().unwrap();
                if committed >= 3000 {
                    break;
                }
            }
        }
        assert!(committed >= 3000, "the writer stopped early");
        child.kill().unwrap(); // SIGKILL: no destructors, no rollback, possibly mid-transaction
        let status = child.wait().unwrap();
        assert!(!status.success());
        for line in lines {
            if let Some(n) = line.unwrap().strip_prefix("committed ") {
                committed = n.trim().parse().unwrap();
            }
        }
        let c = AnswerCache::open(&path).unwrap();
        assert_eq!(c.integrity_check().unwrap(), "ok");
        let s = settings_json(&GenerationSettings::default());
        for k in 0..committed {
            let got = c.get("m", &s, &format!("h{k}")).unwrap();
            assert_eq!(got.map(|a| a.completion), Some(completion(k)), "committed answer h{k} lost");
        }
        let n = c.len().unwrap();
        assert!(n >= committed, "{n} rows < {committed} committed");
        // Whatever was in flight is all or nothing: rows are exactly a prefix of the keys.
        assert!(c.get("m", &s, &format!("h{}", n - 1)).unwrap().is_some());
        assert!(c.get("m", &s, &format!("h{n}")).unwrap().is_none());
        eprintln!("killed after {committed} committed answers; {n} rows survived");
    }

    struct Echo {
        calls: usize,
    }

    impl LlmBackend for Echo {
        fn model_id(&self) -> String {
            "echo".into()
        }
        fn generate(&mut self, requests: &[ChatRequest], _: &GenerationSettings) -> Result<Vec<Completion>> {
            self.calls += 1;
            Ok(requests
                .iter()
                .map(|r| Completion { text: r.user.to_uppercase(), prompt_tokens: 1, completion_tokens: 1 })
                .collect())
        }
    }

    #[test]
    fn generate_cached_only_asks_for_missing_answers() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = AnswerCache::open(&dir.path().join("a.sqlite")).unwrap();
        let req = |u: &str| ChatRequest { system: "s".into(), user: u.into(), constraint: None };
        let reqs: Vec<ChatRequest> = ["a", "b", "c", "d", "e"].iter().map(|u| req(u)).collect();
        let settings = GenerationSettings::default();
        let mut llm = Echo { calls: 0 };
        let run = generate_cached(&mut llm, &mut cache, &reqs[..3], &settings, 2).unwrap();
        assert_eq!((run.hits, run.generated, llm.calls), (0, 3, 2));
        let run = generate_cached(&mut llm, &mut cache, &reqs, &settings, 2).unwrap();
        assert_eq!((run.hits, run.generated, llm.calls), (3, 2, 3));
        let texts: Vec<&str> = run.completions.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, vec!["A", "B", "C", "D", "E"]);
        assert_eq!(cache.len().unwrap(), 5);
    }
}
