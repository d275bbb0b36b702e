//! The SR-GNN pickle layout used throughout the GNN session-recommendation literature.
//!
//! | file | content |
//! |---|---|
//! | `train.txt`, `test.txt` | a pickled `[sessions, targets]` (list or tuple of two lists): `sessions` is a list of lists of item ids, `targets` a list of item ids of the same length |
//! | `all_train_seq.txt` | a pickled list of full training sessions (optional) |
//!
//! Item ids must be ≥ 1 (0 is padding). Pickles are binary, so errors name the file and the
//! position inside the unpickled value (e.g. `sessions[3][1]`) instead of a line.

use crate::{DataError, Dataset, Example, Result};
use serde_pickle::{DeOptions, Value};
use std::path::Path;

/// File names of the SR-GNN layout.
pub const TRAIN: &str = "train.txt";
pub const TEST: &str = "test.txt";
pub const SEQUENCES: &str = "all_train_seq.txt";

fn shape_error(path: &Path, msg: impl std::fmt::Display) -> DataError {
    DataError::Other(format!("{}: {msg}", path.display()))
}

/// Unpickles a whole file into a generic value.
fn load_value(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if bytes.is_empty() {
        return Err(shape_error(path, "empty file, expected a Python pickle"));
    }
    serde_pickle::value_from_slice(&bytes, DeOptions::new())
        .map_err(|e| shape_error(path, format!("not a readable Python pickle: {e}")))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "bool",
        Value::I64(_) | Value::Int(_) => "int",
        Value::F64(_) => "float",
        Value::Bytes(_) => "bytes",
        Value::String(_) => "str",
        Value::List(_) => "list",
        Value::Tuple(_) => "tuple",
        Value::Set(_) => "set",
        Value::FrozenSet(_) => "frozenset",
        Value::Dict(_) => "dict",
    }
}

/// The elements of a list or tuple.
fn as_seq<'a>(path: &Path, what: &str, v: &'a Value) -> Result<&'a [Value]> {
    match v {
        Value::List(items) | Value::Tuple(items) => Ok(items),
        other => Err(shape_error(path, format!("{what}: expected a list, found {}", type_name(other)))),
    }
}

/// One item id: a Python int in 1..=u32::MAX.
fn as_id(path: &Path, what: &str, v: &Value) -> Result<u32> {
    match v {
        Value::I64(i) => {
            if *i == 0 {
                Err(shape_error(path, format!("{what}: item id 0 is padding (ids start at 1)")))
            } else if *i < 0 || *i > u32::MAX as i64 {
                Err(shape_error(path, format!("{what}: item id {i} out of range")))
            } else {
                Ok(*i as u32)
            }
        }
        Value::Int(big) => Err(shape_error(path, format!("{what}: item id {big} out of range"))),
        other => {
            Err(shape_error(path, format!("{what}: expected an integer item id, found {}", type_name(other))))
        }
    }
}

fn as_session(path: &Path, what: &str, v: &Value) -> Result<Vec<u32>> {
    as_seq(path, what, v)?
        .iter()
        .enumerate()
        .map(|(j, id)| as_id(path, &format!("{what}[{j}]"), id))
        .collect()
}

/// Reads a pickled `[sessions, targets]` file (`train.txt` / `test.txt`).
pub fn read_examples_pickle(path: &Path) -> Result<Vec<Example>> {
    let value = load_value(path)?;
    let top = as_seq(path, "top level ([sessions, targets])", &value)?;
    if top.len() != 2 {
        return Err(shape_error(
            path,
            format!("expected [sessions, targets] (2 elements), found {} elements", top.len()),
        ));
    }
    let sessions = as_seq(path, "sessions", &top[0])?;
    let targets = as_seq(path, "targets", &top[1])?;
    if sessions.len() != targets.len() {
        return Err(shape_error(path, format!("{} sessions but {} targets", sessions.len(), targets.len())));
    }
    let mut out = Vec::with_capacity(sessions.len());
    for (i, (s, t)) in sessions.iter().zip(targets).enumerate() {
        let prefix = as_session(path, &format!("sessions[{i}]"), s)?;
        if prefix.is_empty() {
            return Err(shape_error(path, format!("sessions[{i}]: empty session")));
        }
        let target = as_id(path, &format!("targets[{i}]"), t)?;
        out.push(Example { prefix, target });
    }
    Ok(out)
}

/// Reads a pickled list of sessions (`all_train_seq.txt`).
pub fn read_sequences_pickle(path: &Path) -> Result<Vec<Vec<u32>>> {
    let value = load_value(path)?;
    as_seq(path, "top level (list of sessions)", &value)?
        .iter()
        .enumerate()
        .map(|(i, s)| as_session(path, &format!("sessions[{i}]"), s))
        .collect()
}

/// Reads an SR-GNN folder: `train.txt`, `test.txt` and, if present, `all_train_seq.txt`.
///
/// The catalog comes from `items_tsv` (see [`crate::tsv::read_items`]); without it,
/// `dir/items.tsv` is used when it exists, otherwise the catalog is untitled and sized by the
/// largest id. Without `all_train_seq.txt` the training sessions are `prefix + target` of every
/// training example. The dataset's name is the folder's name.
pub fn read_pickle_dataset(dir: &Path, items_tsv: Option<&Path>) -> Result<Dataset> {
    if !dir.is_dir() {
        return Err(DataError::Other(format!("{}: not a folder", dir.display())));
    }
    let train = read_examples_pickle(&dir.join(TRAIN))?;
    let test = read_examples_pickle(&dir.join(TEST))?;
    let seq_path = dir.join(SEQUENCES);
    let train_sequences = if seq_path.exists() {
        read_sequences_pickle(&seq_path)?
    } else {
        train.iter().map(|e| e.prefix.iter().copied().chain([e.target]).collect()).collect()
    };
    let default_items = dir.join(crate::tsv::ITEMS);
    let items_path = items_tsv.or_else(|| default_items.exists().then_some(default_items.as_path()));
    let catalog = match items_path {
        Some(p) => crate::tsv::read_items(p)?,
        None => crate::tsv::untitled_catalog(&train, &test, &train_sequences),
    };
    let name = crate::tsv::folder_name(dir);
    crate::tsv::validated(dir, Dataset { name, catalog, train, test, train_sequences })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Runs `python3 -c "import pickle; obj = <expr>; pickle.dump(obj, f, protocol=<p>)"`.
    fn pickle_to(path: &Path, expr: &str, protocol: u8) {
        let script = format!(
            "import pickle, sys\nobj = {expr}\nwith open(sys.argv[1], 'wb') as f:\n    pickle.dump(obj, f, protocol={protocol})\n"
        );
        let status = Command::new("python3")
            .arg("-c")
            .arg(&script)
            .arg(path)
            .status()
            .expect("python3 is needed to write pickle fixtures");
        assert!(status.success(), "python3 failed writing {}", path.display());
    }

    #[test]
    fn reads_examples_and_sequences_protocol_2_and_4() {
        for protocol in [2u8, 4] {
            let d = tempfile::tempdir().unwrap();
            let p = d.path().join("train.txt");
            pickle_to(&p, "[[[1, 2], [3], [2, 3, 4]], [3, 4, 5]]", protocol);
            let ex = read_examples_pickle(&p).unwrap();
            assert_eq!(
                ex,
                vec![
                    Example { prefix: vec![1, 2], target: 3 },
                    Example { prefix: vec![3], target: 4 },
                    Example { prefix: vec![2, 3, 4], target: 5 },
                ],
                "protocol {protocol}"
            );
            // A tuple of tuples is accepted too (some preprocessors pickle tuples).
            let p = d.path().join("tuple.txt");
            pickle_to(&p, "(((7, 8),), (9,))", protocol);
            assert_eq!(read_examples_pickle(&p).unwrap(), vec![Example { prefix: vec![7, 8], target: 9 }]);

            let p = d.path().join("all_train_seq.txt");
            pickle_to(&p, "[[1, 2, 3], [4], [100000, 70000]]", protocol);
            assert_eq!(read_sequences_pickle(&p).unwrap(), vec![vec![1, 2, 3], vec![4], vec![100000, 70000]]);
        }
    }

    #[test]
    fn reads_a_dataset_folder_with_and_without_items() {
        let d = tempfile::tempdir().unwrap();
        pickle_to(&d.path().join(TRAIN), "[[[1, 2], [2]], [3, 3]]", 4);
        pickle_to(&d.path().join(TEST), "[[[3, 1]], [4]]", 4);
        // Without all_train_seq.txt: sequences are prefix + target; untitled catalog sized by max id.
        let ds = read_pickle_dataset(d.path(), None).unwrap();
        assert_eq!(ds.n_items(), 4);
        assert_eq!(ds.train_sequences, vec![vec![1, 2, 3], vec![2, 3]]);
        assert_eq!(ds.test, vec![Example { prefix: vec![3, 1], target: 4 }]);
        assert!(!ds.catalog.has_titles());

        pickle_to(&d.path().join(SEQUENCES), "[[1, 2, 3], [2, 3], [5]]", 2);
        let items = d.path().join("titles.tsv");
        std::fs::write(&items, "item_id\ttitle\n1\tA\n2\tB\n3\tC\n4\tD\n5\tE\n").unwrap();
        let ds = read_pickle_dataset(d.path(), Some(&items)).unwrap();
        assert_eq!(ds.n_items(), 5);
        assert_eq!(ds.train_sequences.len(), 3);
        assert_eq!(ds.catalog.title(5), "E");

        // An items file too small for the ids is rejected by validation.
        std::fs::write(&items, "item_id\ttitle\n1\tA\n2\tB\n").unwrap();
        let err = read_pickle_dataset(d.path(), Some(&items)).unwrap_err().to_string();
        assert!(err.contains("outside 1..=2"), "{err}");
    }

    #[test]
    fn garbage_and_truncated_pickles_error_with_the_path() {
        let d = tempfile::tempdir().unwrap();
        let good = d.path().join("good.txt");
        pickle_to(&good, "[[[1, 2], [3, 4, 5]], [3, 6]]", 4);
        let bytes = std::fs::read(&good).unwrap();

        let truncated = d.path().join("truncated.txt");
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_examples_pickle(&truncated).unwrap_err().to_string();
        assert!(err.contains("truncated.txt") && err.contains("pickle"), "{err}");

        let garbage = d.path().join("garbage.txt");
        std::fs::write(&garbage, b"1 2 3\t4\nthis is not a pickle\n").unwrap();
        let err = read_examples_pickle(&garbage).unwrap_err().to_string();
        assert!(err.contains("garbage.txt"), "{err}");

        let empty = d.path().join("empty.txt");
        std::fs::write(&empty, b"").unwrap();
        assert!(read_sequences_pickle(&empty).unwrap_err().to_string().contains("empty file"));

        let missing = d.path().join("missing.txt");
        assert!(matches!(read_examples_pickle(&missing), Err(DataError::Io { .. })));
    }

    #[test]
    fn wrong_shapes_and_bad_ids_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.txt");
        let cases = [
            ("{'a': 1}", "expected a list, found dict"),
            ("[[[1, 2]], [3], [4]]", "3 elements"),
            ("[[[1, 2], [3]], [4]]", "2 sessions but 1 targets"),
            ("[[[1, 'a']], [4]]", "sessions[0][1]: expected an integer item id, found str"),
            ("[[[1, 0]], [4]]", "sessions[0][1]: item id 0 is padding"),
            ("[[[1, 2]], [0]]", "targets[0]: item id 0 is padding"),
            ("[[[1, -3]], [4]]", "item id -3 out of range"),
            ("[[[1, 2**40]], [4]]", "out of range"),
            ("[[[1, 2]], [4.5]]", "found float"),
            ("[[[]], [4]]", "sessions[0]: empty session"),
            ("[[5], [4]]", "sessions[0]: expected a list, found int"),
        ];
        for (expr, want) in cases {
            pickle_to(&p, expr, 4);
            let err = read_examples_pickle(&p).unwrap_err().to_string();
            assert!(err.contains("x.txt") && err.contains(want), "{expr}: {err}");
        }
        pickle_to(&p, "[[1, 2], 3]", 2);
        let err = read_sequences_pickle(&p).unwrap_err().to_string();
        assert!(err.contains("sessions[1]: expected a list, found int"), "{err}");
        pickle_to(&p, "[[1, 0]]", 2);
        assert!(read_sequences_pickle(&p).unwrap_err().to_string().contains("padding"));
    }
}
