//! The `dmsrec` binary end to end on a small synthetic dataset.

mod common;

use common::{dmsrec, ok, p};

#[test]
fn synth_train_evaluate_recommend() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("shop");
    let runs = tmp.path().join("runs");
    let results = tmp.path().join("res.json");
    ok(&[
        "data",
        "synth",
        "--out",
        p(&data),
        "--items",
        "80",
        "--train-sessions",
        "300",
        "--test-sessions",
        "60",
    ]);
    for f in ["train.tsv", "test.tsv", "all_train_seq.tsv", "items.tsv"] {
        assert!(data.join(f).exists(), "{f} missing");
    }
    let stats = ok(&["data", "stats", "--data", p(&data)]);
    assert!(stats.contains("#train") && stats.contains("#items"), "{stats}");

    let train = ok(&[
        "train",
        "--data",
        p(&data),
        "--out",
        p(&runs),
        "--protocol",
        "both",
        "--epochs",
        "2",
        "--dim",
        "16",
        "--results",
        p(&results),
    ]);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&results).unwrap()).unwrap();
    for protocol in ["paper", "valid"] {
        for metric in ["P@5", "P@10", "P@20", "MRR@5", "MRR@10", "MRR@20"] {
            let v = json["metrics"][protocol][metric].as_f64().unwrap();
            assert!((0.0..=100.0).contains(&v), "{protocol} {metric} = {v}");
        }
    }
    assert_eq!(json["variant"], "plain");
    assert_eq!(json["seed"], 2024);

    // `evaluate` reproduces the numbers training printed for the kept checkpoint.
    let printed = train.lines().find(|l| l.starts_with("Valid protocol, test")).unwrap();
    let printed = printed.split("): ").nth(1).unwrap();
    let eval = ok(&["evaluate", "--checkpoint", p(&runs.join("valid"))]);
    assert!(eval.contains(printed), "evaluate printed\n{eval}\ntraining printed\n{printed}");

    let rec = ok(&["recommend", "--checkpoint", p(&runs.join("valid")), "--session", "1 2 3", "-k", "5"]);
    let ranked: Vec<&str> = rec
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && l.contains(". "))
        .collect();
    assert_eq!(ranked.len(), 5, "{rec}");

    let bad = dmsrec(&["recommend", "--checkpoint", p(&runs.join("valid")), "--session", "1 0"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("outside 1..=80"));
}

#[test]
fn malformed_dataset_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("train.tsv"), "1 2\t3\n4 five\t6\n").unwrap();
    std::fs::write(tmp.path().join("test.tsv"), "1\t2\n").unwrap();
    let out = dmsrec(&["data", "stats", "--data", p(tmp.path())]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("train.tsv:2") && err.contains("five"), "{err}");
}

#[test]
fn import_refuses_to_leave_half_written_output() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("train.tsv"), "1 2\t3\n").unwrap();
    std::fs::write(input.join("test.tsv"), "1\tx\n").unwrap();
    let res = dmsrec(&["data", "import", "--format", "tsv", "--input", p(&input), "--out", p(&out)]);
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("test.tsv:1"));
    assert!(!out.join("train.tsv").exists(), "nothing is written when the input is bad");
}
