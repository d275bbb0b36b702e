//! Fetching the raw public datasets, for users with internet access.
//!
//! * [`Source::Ml1m`]: GroupLens' `ml-1m.zip`; `ratings.dat` and `movies.dat` are extracted next
//!   to it (see [`crate::movielens`]).
//! * [`Source::Beauty`]: the Amazon 2014 5-core Beauty reviews `reviews_Beauty_5.json.gz` and
//!   the metadata `meta_Beauty.json.gz` (see [`crate::amazon`]).
//!
//! Every file is checked against a SHA-256: the one passed in
//! [`DownloadOptions::expected_sha256`], else a built-in one, else the one recorded in
//! `checksums.json` next to the files by the first download (trust on first use; a `.gz` file is
//! then also checked to decompress cleanly). Downloads go to `<file>.part` and resume with an
//! HTTP `Range` request when that exists; the file gets its final name only once the checksum
//! matches, and a mismatch deletes the `.part` file.

use crate::atomic::{write_atomic, write_bytes_atomic};
use crate::{DataError, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The name of the file that records checksums next to the downloads.
pub const CHECKSUMS: &str = "checksums.json";

/// A public dataset that can be downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// MovieLens-1M (GroupLens).
    Ml1m,
    /// Amazon review data 2014, Beauty 5-core, with metadata (UCSD / SNAP).
    Beauty,
}

/// One file of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteFile {
    pub name: &'static str,
    /// Known SHA-256 (lowercase hex), if published.
    pub sha256: Option<&'static str>,
}

impl Source {
    pub const ALL: [Source; 2] = [Source::Ml1m, Source::Beauty];

    pub fn name(self) -> &'static str {
        match self {
            Source::Ml1m => "ml-1m",
            Source::Beauty => "beauty",
        }
    }

    /// The folder URL the files are fetched from (without a trailing `/`).
    pub fn default_base_url(self) -> &'static str {
        match self {
            Source::Ml1m => "https://files.grouplens.org/datasets/movielens",
            Source::Beauty => "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles",
        }
    }

    pub fn files(self) -> &'static [RemoteFile] {
        match self {
            // SHA-256 and size (5,917,549 bytes) of ml-1m.zip as recorded by TensorFlow Datasets
            // (tensorflow/datasets, tensorflow_datasets/url_checksums/movielens.txt). GroupLens
            // itself publishes the MD5 c4d9eecfca2ab87c1945afe126590906 (ml-1m.zip.md5).
            Source::Ml1m => &[RemoteFile {
                name: "ml-1m.zip",
                sha256: Some("a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"),
            }],
            // No published checksums are known for these: trust on first use (checksums.json).
            Source::Beauty => &[
                RemoteFile { name: "reviews_Beauty_5.json.gz", sha256: None },
                RemoteFile { name: "meta_Beauty.json.gz", sha256: None },
            ],
        }
    }

    /// The files the readers need, once downloaded (and extracted).
    pub fn data_files(self) -> &'static [&'static str] {
        match self {
            Source::Ml1m => &[crate::movielens::RATINGS, crate::movielens::MOVIES],
            Source::Beauty => &["reviews_Beauty_5.json.gz", "meta_Beauty.json.gz"],
        }
    }
}

impl std::str::FromStr for Source {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "ml-1m" | "ml1m" | "movielens" | "movielens-1m" => Ok(Source::Ml1m),
            "beauty" | "amazon-beauty" => Ok(Source::Beauty),
            _ => Err(DataError::Other(format!("unknown source {s:?} (known: ml-1m, beauty)"))),
        }
    }
}

/// Progress of one file: bytes on disk so far and the total when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress<'a> {
    pub file: &'a str,
    pub bytes: u64,
    pub total: Option<u64>,
    pub done: bool,
}

pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Prints a line to stderr every 8 MiB and when a file is complete.
pub fn eprint_progress() -> ProgressFn {
    let last = Arc::new(std::sync::Mutex::new(0u64));
    Arc::new(move |p: &Progress| {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if p.done || p.bytes < *last || p.bytes - *last >= 8 << 20 {
            *last = p.bytes;
            let mb = |b: u64| b as f64 / (1 << 20) as f64;
            match p.total {
                Some(t) => eprintln!(
                    "{}: {:.1} / {:.1} MiB{}",
                    p.file,
                    mb(p.bytes),
                    mb(t),
                    if p.done { " done" } else { "" }
                ),
                None => eprintln!("{}: {:.1} MiB{}", p.file, mb(p.bytes), if p.done { " done" } else { "" }),
            }
        }
    })
}

#[derive(Clone)]
pub struct DownloadOptions {
    /// Replaces the source's folder URL (e.g. a mirror, or a local server in tests).
    pub base_url: Option<String>,
    /// Expected SHA-256 per file name; overrides built-in and recorded checksums.
    pub expected_sha256: BTreeMap<String, String>,
    /// Called as bytes arrive (about every MiB) and when a file is complete.
    pub progress: Option<ProgressFn>,
    /// Seconds without progress (connect, or between reads) before giving up.
    pub timeout_s: u64,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self { base_url: None, expected_sha256: BTreeMap::new(), progress: None, timeout_s: 60 }
    }
}

impl std::fmt::Debug for DownloadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadOptions")
            .field("base_url", &self.base_url)
            .field("expected_sha256", &self.expected_sha256)
            .field("progress", &self.progress.as_ref().map(|_| "<fn>"))
            .field("timeout_s", &self.timeout_s)
            .finish()
    }
}

/// What [`download`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownloadReport {
    /// The files the readers need (see [`Source::data_files`]).
    pub data_files: Vec<PathBuf>,
    /// Remote files fetched now (by name).
    pub fetched: Vec<String>,
    /// Remote files already present and verified.
    pub already_present: Vec<String>,
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

fn read_checksums(path: &Path) -> Result<BTreeMap<String, String>> {
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        DataError::parse(path, e.line(), format!("expected a JSON object of file name → SHA-256: {e}"))
    })
}

fn write_checksums(path: &Path, sums: &BTreeMap<String, String>) -> Result<()> {
    let text = serde_json::to_string_pretty(sums).expect("a map of strings serializes");
    write_bytes_atomic(path, format!("{text}\n").as_bytes())
}

fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host = rest.split(['/', ':']).next().unwrap_or("");
    host == "localhost" || host.starts_with("127.") || rest.starts_with("[::1]")
}

fn client(url: &str, opts: &DownloadOptions) -> Result<reqwest::blocking::Client> {
    let timeout = Duration::from_secs(opts.timeout_s.max(1));
    let mut b = reqwest::blocking::Client::builder()
        .user_agent(concat!("dmsrec/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(timeout)
        .timeout(timeout);
    if is_loopback(url) {
        b = b.no_proxy();
    }
    b.build().map_err(|e| DataError::Other(format!("cannot set up the HTTP client: {e}")))
}

/// `bytes START-END/TOTAL` → (START, TOTAL).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

/// Fetches `url` into `part`, resuming from its current length.
fn fetch_to_part(url: &str, part: &Path, name: &str, opts: &DownloadOptions) -> Result<()> {
    let fail = |msg: String| DataError::Other(format!("{url}: {msg}"));
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let http = client(url, opts)?;
    let mut req = http.get(url);
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut resp = req.send().map_err(|e| fail(format!("request failed: {e}")))?;
    let status = resp.status().as_u16();
    let (mut file, mut bytes, total) = match status {
        206 if have > 0 => {
            let cr = resp
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_content_range);
            let total = match cr {
                Some((start, total)) if start == have => total,
                Some((start, _)) => {
                    return Err(fail(format!(
                        "asked to resume at byte {have}, the server sent a range from byte {start}"
                    )))
                }
                None => return Err(fail("a 206 response without a valid Content-Range".into())),
            };
            let f =
                std::fs::OpenOptions::new().append(true).open(part).map_err(|e| DataError::io(part, e))?;
            (f, have, total.or(resp.content_length().map(|l| l + have)))
        }
        200 => {
            // A fresh download, or a server that ignored the Range header: start over.
            let f = std::fs::File::create(part).map_err(|e| DataError::io(part, e))?;
            (f, 0, resp.content_length())
        }
        416 if have > 0 => {
            // Nothing left to send: the .part file is complete (the checksum decides).
            return Ok(());
        }
        _ => return Err(fail(format!("HTTP status {}", resp.status()))),
    };
    let report = |bytes: u64, done: bool| {
        if let Some(p) = &opts.progress {
            p(&Progress { file: name, bytes, total, done });
        }
    };
    let mut buf = vec![0u8; 1 << 16];
    let mut last_report = bytes;
    loop {
        let n = match resp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = file.flush();
                return Err(fail(format!(
                    "download interrupted after {bytes} bytes ({e}); run again to resume from {}",
                    part.display()
                )));
            }
        };
        file.write_all(&buf[..n]).map_err(|e| DataError::io(part, e))?;
        bytes += n as u64;
        if bytes - last_report >= 1 << 20 {
            last_report = bytes;
            report(bytes, false);
        }
    }
    file.flush().map_err(|e| DataError::io(part, e))?;
    file.sync_all().map_err(|e| DataError::io(part, e))?;
    if let Some(t) = total {
        if bytes != t {
            return Err(fail(format!(
                "connection closed after {bytes} of {t} bytes; run again to resume from {}",
                part.display()
            )));
        }
    }
    report(bytes, true);
    Ok(())
}

/// Checks that a gzip file decompresses to the end without error (CRC and length included).
fn check_gzip(path: &Path) -> Result<()> {
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut d = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(f));
    std::io::copy(&mut d, &mut std::io::sink())
        .map(|_| ())
        .map_err(|e| DataError::Other(format!("{}: not a valid gzip file: {e}", path.display())))
}

/// Downloads one file to `dest` (through `dest.part`) and verifies it. With `expected` the
/// SHA-256 must match; without it, `.gz` files must decompress cleanly. Returns the SHA-256.
pub fn download_file(
    url: &str,
    dest: &Path,
    expected: Option<&str>,
    opts: &DownloadOptions,
) -> Result<String> {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut part = dest.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    fetch_to_part(url, &part, &name, opts)?;
    let actual = sha256_file(&part)?;
    match expected {
        Some(want) if !want.eq_ignore_ascii_case(&actual) => {
            let _ = std::fs::remove_file(&part);
            return Err(DataError::Other(format!(
                "{url}: checksum mismatch: expected SHA-256 {want}, got {actual}; the partial file was deleted"
            )));
        }
        Some(_) => {}
        None => {
            if name.ends_with(".gz") {
                if let Err(e) = check_gzip(&part) {
                    let _ = std::fs::remove_file(&part);
                    return Err(DataError::Other(format!("{url}: {e}; the partial file was deleted")));
                }
            }
        }
    }
    std::fs::rename(&part, dest).map_err(|e| DataError::io(dest, e))?;
    Ok(actual)
}

/// Extracts the entries whose base name is one of `names` into `dir` (atomically each).
fn extract_zip(zip_path: &Path, names: &[&str], dir: &Path) -> Result<Vec<PathBuf>> {
    let bad =
        |e: zip::result::ZipError| DataError::Other(format!("{}: bad zip archive: {e}", zip_path.display()));
    let f = std::fs::File::open(zip_path).map_err(|e| DataError::io(zip_path, e))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(f)).map_err(bad)?;
    let mut out = Vec::new();
    for &want in names {
        let mut found = None;
        for i in 0..archive.len() {
            let entry = archive.by_index(i).map_err(bad)?;
            let entry_name = entry.name().map_err(bad)?;
            if !entry.is_dir() && entry_name.rsplit('/').next() == Some(want) {
                found = Some(i);
                break;
            }
        }
        let i = found
            .ok_or_else(|| DataError::Other(format!("{}: the archive has no {want}", zip_path.display())))?;
        let mut entry = archive.by_index(i).map_err(bad)?;
        let target = dir.join(want);
        write_atomic(&target, |w| std::io::copy(&mut entry, w).map(|_| ()))?;
        out.push(target);
    }
    Ok(out)
}

/// Downloads (or verifies what is already there) a source into `dest_dir`.
pub fn download(source: Source, dest_dir: &Path, opts: &DownloadOptions) -> Result<DownloadReport> {
    std::fs::create_dir_all(dest_dir).map_err(|e| DataError::io(dest_dir, e))?;
    let sums_path = dest_dir.join(CHECKSUMS);
    let mut recorded = read_checksums(&sums_path)?;
    let base =
        opts.base_url.as_deref().unwrap_or(source.default_base_url()).trim_end_matches('/').to_string();
    let mut report = DownloadReport::default();
    for file in source.files() {
        let expected: Option<String> = opts
            .expected_sha256
            .get(file.name)
            .cloned()
            .or(file.sha256.map(str::to_string))
            .or_else(|| recorded.get(file.name).cloned());
        let dest = dest_dir.join(file.name);
        let actual = if dest.exists() {
            let actual = sha256_file(&dest)?;
            if let Some(want) = &expected {
                if !want.eq_ignore_ascii_case(&actual) {
                    return Err(DataError::Other(format!(
                        "{}: checksum mismatch: expected SHA-256 {want}, found {actual}; delete the file to download it again",
                        dest.display()
                    )));
                }
            }
            report.already_present.push(file.name.to_string());
            actual
        } else {
            let url = format!("{base}/{}", file.name);
            let actual = download_file(&url, &dest, expected.as_deref(), opts)?;
            report.fetched.push(file.name.to_string());
            actual
        };
        if recorded.get(file.name) != Some(&actual) {
            recorded.insert(file.name.to_string(), actual);
            write_checksums(&sums_path, &recorded)?;
        }
    }
    report.data_files = match source {
        Source::Ml1m => extract_zip(&dest_dir.join("ml-1m.zip"), source.data_files(), dest_dir)?,
        Source::Beauty => source.data_files().iter().map(|n| dest_dir.join(n)).collect(),
    };
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Cursor;
    use std::sync::Mutex;

    type RequestLog = Arc<Mutex<Vec<(String, Option<String>)>>>;

    /// A real HTTP server on 127.0.0.1 serving in-memory files, with `Range` support (unless
    /// told to ignore it), logging every request's path and Range header.
    struct TestServer {
        server: Arc<tiny_http::Server>,
        thread: Option<std::thread::JoinHandle<()>>,
        files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
        log: RequestLog,
        ignore_range: Arc<std::sync::atomic::AtomicBool>,
    }

    impl TestServer {
        fn start() -> Self {
            let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
            let files: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
            let log: RequestLog = Arc::default();
            let ignore_range = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (s, f, l, ig) = (server.clone(), files.clone(), log.clone(), ignore_range.clone());
            let thread = std::thread::spawn(move || {
                for req in s.incoming_requests() {
                    let path = req.url().to_string();
                    let range = req
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv("Range"))
                        .map(|h| h.value.as_str().to_string());
                    l.lock().unwrap().push((path.clone(), range.clone()));
                    let data = f.lock().unwrap().get(path.trim_start_matches('/')).cloned();
                    let Some(data) = data else {
                        let _ = req
                            .respond(tiny_http::Response::from_string("no such file").with_status_code(404));
                        continue;
                    };
                    let start = range
                        .filter(|_| !ig.load(std::sync::atomic::Ordering::SeqCst))
                        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse::<usize>().ok());
                    let resp = match start {
                        Some(s) if s >= data.len() => {
                            tiny_http::Response::from_data(Vec::new()).with_status_code(416)
                        }
                        Some(s) => {
                            let cr = format!("bytes {}-{}/{}", s, data.len() - 1, data.len());
                            tiny_http::Response::from_data(data[s..].to_vec())
                                .with_status_code(206)
                                .with_header(tiny_http::Header::from_bytes("Content-Range", cr).unwrap())
                        }
                        None => tiny_http::Response::from_data(data),
                    };
                    let _ = req.respond(resp);
                }
            });
            TestServer { server, thread: Some(thread), files, log, ignore_range }
        }

        fn base_url(&self) -> String {
            format!("http://{}", self.server.server_addr().to_ip().unwrap())
        }

        fn put(&self, name: &str, data: Vec<u8>) {
            self.files.lock().unwrap().insert(name.to_string(), data);
        }

        fn requests(&self) -> Vec<(String, Option<String>)> {
            self.log.lock().unwrap().clone()
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.server.unblock();
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    const RATINGS_TXT: &str = "1::10::5::0\n1::20::3::60\n2::10::4::0\n2::20::4::30\n";
    const MOVIES_TXT: &[u8] = b"10::Caf\xe9 (1990)::Drama\n20::B (1991)::Comedy\n";

    /// A zip shaped like GroupLens' ml-1m.zip, with padding so resumes have something to skip.
    fn fixture_zip() -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let deflated =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        let stored =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        w.add_directory("ml-1m/", stored).unwrap();
        w.start_file("ml-1m/README", stored).unwrap();
        w.write_all(&[b'x'; 3000]).unwrap();
        w.start_file("ml-1m/ratings.dat", deflated).unwrap();
        w.write_all(RATINGS_TXT.as_bytes()).unwrap();
        w.start_file("ml-1m/movies.dat", deflated).unwrap();
        w.write_all(MOVIES_TXT).unwrap();
        w.finish().unwrap().into_inner()
    }

    fn sha(bytes: &[u8]) -> String {
        format!("{:x}", Sha256::digest(bytes))
    }

    fn opts_for(server: &TestServer, zip: &[u8]) -> DownloadOptions {
        DownloadOptions {
            base_url: Some(server.base_url() + "/"),
            expected_sha256: [("ml-1m.zip".to_string(), sha(zip))].into_iter().collect(),
            timeout_s: 10,
            ..Default::default()
        }
    }

    #[test]
    fn full_download_extracts_and_then_skips() {
        let server = TestServer::start();
        let zip = fixture_zip();
        server.put("ml-1m.zip", zip.clone());
        let d = tempfile::tempdir().unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let c = calls.clone();
        let mut opts = opts_for(&server, &zip);
        opts.progress =
            Some(Arc::new(move |p: &Progress| c.lock().unwrap().push((p.bytes, p.total, p.done))));
        let rep = download(Source::Ml1m, d.path(), &opts).unwrap();
        assert_eq!(rep.fetched, vec!["ml-1m.zip"]);
        assert_eq!(rep.data_files, vec![d.path().join("ratings.dat"), d.path().join("movies.dat")]);
        assert_eq!(std::fs::read(d.path().join("ml-1m.zip")).unwrap(), zip);
        assert_eq!(std::fs::read_to_string(d.path().join("ratings.dat")).unwrap(), RATINGS_TXT);
        assert_eq!(std::fs::read(d.path().join("movies.dat")).unwrap(), MOVIES_TXT);
        assert!(!d.path().join("ml-1m.zip.part").exists());
        assert_eq!(calls.lock().unwrap().last(), Some(&(zip.len() as u64, Some(zip.len() as u64), true)));
        let sums = read_checksums(&d.path().join(CHECKSUMS)).unwrap();
        assert_eq!(sums.get("ml-1m.zip"), Some(&sha(&zip)));
        assert_eq!(server.requests(), vec![("/ml-1m.zip".to_string(), None)]);

        // The extracted files are what the MovieLens reader expects.
        let ds = crate::movielens::read_movielens_with(
            d.path(),
            &crate::movielens::MovielensOptions { min_ratings: 1, train_fraction: 1.0, ..Default::default() },
        )
        .unwrap()
        .0;
        assert_eq!(ds.catalog.title(1), "Café (1990)");

        // A second run verifies the file and fetches nothing.
        let rep = download(Source::Ml1m, d.path(), &opts).unwrap();
        assert_eq!(rep.already_present, vec!["ml-1m.zip"]);
        assert!(rep.fetched.is_empty());
        assert_eq!(server.requests().len(), 1);
    }

    #[test]
    fn resumes_a_truncated_part_file_with_a_range_request() {
        let server = TestServer::start();
        let zip = fixture_zip();
        server.put("ml-1m.zip", zip.clone());
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("ml-1m.zip.part"), &zip[..1234]).unwrap();
        let rep = download(Source::Ml1m, d.path(), &opts_for(&server, &zip)).unwrap();
        assert_eq!(rep.fetched, vec!["ml-1m.zip"]);
        assert_eq!(std::fs::read(d.path().join("ml-1m.zip")).unwrap(), zip);
        assert_eq!(server.requests(), vec![("/ml-1m.zip".to_string(), Some("bytes=1234-".to_string()))]);
        assert!(!d.path().join("ml-1m.zip.part").exists());
        assert!(d.path().join("movies.dat").exists());
    }

    #[test]
    fn a_server_ignoring_range_restarts_and_a_complete_part_is_accepted() {
        let server = TestServer::start();
        let zip = fixture_zip();
        server.put("ml-1m.zip", zip.clone());
        let opts = opts_for(&server, &zip);

        // 200 instead of 206: the .part is overwritten from the start.
        server.ignore_range.store(true, std::sync::atomic::Ordering::SeqCst);
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("ml-1m.zip.part"), b"garbage that is not the zip").unwrap();
        download(Source::Ml1m, d.path(), &opts).unwrap();
        assert_eq!(std::fs::read(d.path().join("ml-1m.zip")).unwrap(), zip);

        // A complete .part: the server answers 416, the checksum accepts it.
        server.ignore_range.store(false, std::sync::atomic::Ordering::SeqCst);
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("ml-1m.zip.part"), &zip).unwrap();
        download(Source::Ml1m, d.path(), &opts).unwrap();
        assert_eq!(std::fs::read(d.path().join("ml-1m.zip")).unwrap(), zip);
        let last = server.requests().last().cloned().unwrap();
        assert_eq!(last.1, Some(format!("bytes={}-", zip.len())));
    }

    #[test]
    fn checksum_mismatch_errors_and_leaves_no_file() {
        let server = TestServer::start();
        let zip = fixture_zip();
        server.put("ml-1m.zip", zip.clone());
        let d = tempfile::tempdir().unwrap();
        let mut opts = opts_for(&server, &zip);
        opts.expected_sha256.insert("ml-1m.zip".into(), "0".repeat(64));
        let err = download(Source::Ml1m, d.path(), &opts).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch") && err.contains(&sha(&zip)), "{err}");
        assert!(!d.path().join("ml-1m.zip").exists());
        assert!(!d.path().join("ml-1m.zip.part").exists());
        assert!(!d.path().join("ratings.dat").exists());

        // Without an override the built-in GroupLens checksum applies, which the fixture fails.
        opts.expected_sha256.clear();
        let err = download(Source::Ml1m, d.path(), &opts).unwrap_err().to_string();
        assert!(err.contains("a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"), "{err}");
        assert!(!d.path().join("ml-1m.zip").exists());

        // A 404 is reported with its status.
        let mut opts = opts_for(&server, &zip);
        opts.base_url = Some(server.base_url() + "/nothing-here");
        let err = download(Source::Ml1m, d.path(), &opts).unwrap_err().to_string();
        assert!(err.contains("404"), "{err}");
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn unknown_checksums_are_recorded_on_first_use_and_enforced_after() {
        let server = TestServer::start();
        let reviews = gz(br#"{"reviewerID": "A", "asin": "B1", "unixReviewTime": 1}
{"reviewerID": "A", "asin": "B2", "unixReviewTime": 2}
"#);
        let meta = gz(b"{'asin': 'B1', 'title': \"L'Or\\xe9al &amp; co\"}\n");
        server.put("reviews_Beauty_5.json.gz", reviews.clone());
        server.put("meta_Beauty.json.gz", meta.clone());
        let d = tempfile::tempdir().unwrap();
        let opts = DownloadOptions { base_url: Some(server.base_url()), timeout_s: 10, ..Default::default() };
        let rep = download(Source::Beauty, d.path(), &opts).unwrap();
        assert_eq!(rep.fetched.len(), 2);
        let sums = read_checksums(&d.path().join(CHECKSUMS)).unwrap();
        assert_eq!(sums.get("reviews_Beauty_5.json.gz"), Some(&sha(&reviews)));
        assert_eq!(sums.get("meta_Beauty.json.gz"), Some(&sha(&meta)));
        let ds = crate::amazon::read_amazon(&rep.data_files[0], Some(&rep.data_files[1])).unwrap();
        assert_eq!(ds.catalog.title(1), "L'Oréal & co");

        // The upstream file changes: the recorded checksum rejects it.
        std::fs::remove_file(d.path().join("meta_Beauty.json.gz")).unwrap();
        server.put("meta_Beauty.json.gz", gz(b"{'asin': 'B1', 'title': 'other'}\n"));
        let err = download(Source::Beauty, d.path(), &opts).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        assert!(!d.path().join("meta_Beauty.json.gz").exists());
        assert!(!d.path().join("meta_Beauty.json.gz.part").exists());
        assert_eq!(read_checksums(&d.path().join(CHECKSUMS)).unwrap(), sums);

        // A user-given checksum overrides the record.
        let mut o2 = opts.clone();
        o2.expected_sha256
            .insert("meta_Beauty.json.gz".into(), sha(&gz(b"{'asin': 'B1', 'title': 'other'}\n")));
        download(Source::Beauty, d.path(), &o2).unwrap();

        // Without any checksum a corrupt gzip is refused.
        let d = tempfile::tempdir().unwrap();
        let mut truncated = reviews.clone();
        truncated.truncate(reviews.len() - 6);
        server.put("reviews_Beauty_5.json.gz", truncated);
        let err = download(Source::Beauty, d.path(), &opts).unwrap_err().to_string();
        assert!(err.contains("not a valid gzip"), "{err}");
        assert!(!d.path().join("reviews_Beauty_5.json.gz").exists());

        // A damaged checksums.json is reported with its line.
        std::fs::write(d.path().join(CHECKSUMS), "{\n  \"a\": 1\n}\n").unwrap();
        let err = download(Source::Beauty, d.path(), &opts).unwrap_err().to_string();
        assert!(err.contains("checksums.json:2"), "{err}");
    }

    #[test]
    fn helpers() {
        assert_eq!(parse_content_range("bytes 100-199/200"), Some((100, Some(200))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
        assert!(is_loopback("http://127.0.0.1:8080/x"));
        assert!(is_loopback("http://localhost/x"));
        assert!(!is_loopback("https://files.grouplens.org/datasets"));
        assert_eq!("ML-1M".parse::<Source>().unwrap(), Source::Ml1m);
        assert_eq!("beauty".parse::<Source>().unwrap(), Source::Beauty);
        assert!("netflix".parse::<Source>().is_err());
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let _ = eprint_progress();
    }
}
