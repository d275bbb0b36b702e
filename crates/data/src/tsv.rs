//! The canonical dataset folder, as in the paper authors' splits (`shared/data/*-paper`):
//!
//! | file | format |
//! |---|---|
//! | `train.tsv`, `test.tsv` | `space-separated prefix item ids<TAB>target item id` |
//! | `all_train_seq.tsv` | one full training session per line (optional) |
//! | `items.tsv` | header line, then one row per item; column `item_id` required, `title` and `short_title` (the prompt title) optional, other columns kept as fields (optional file) |
//!
//! Without `all_train_seq.tsv` the training sessions are taken as `prefix + target` of every
//! training example. Without `items.tsv` the catalog is untitled and sized by the largest id.

use crate::atomic::write_atomic;
use crate::{Catalog, DataError, Dataset, Example, ItemInfo, Result};
use std::io::Write;
use std::path::Path;

pub const TRAIN: &str = "train.tsv";
pub const TEST: &str = "test.tsv";
pub const SEQUENCES: &str = "all_train_seq.tsv";
pub const ITEMS: &str = "items.tsv";

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))
}

fn parse_ids(path: &Path, line_no: usize, text: &str) -> Result<Vec<u32>> {
    text.split_ascii_whitespace()
        .map(|tok| {
            tok.parse::<u32>()
                .map_err(|_| DataError::parse(path, line_no, format!("expected an item id, found {tok:?}")))
        })
        .collect()
}

/// Reads `prefix<TAB>target` lines.
pub fn read_examples(path: &Path) -> Result<Vec<Example>> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let (prefix, target) = line.split_once('\t').ok_or_else(|| {
            DataError::parse(path, line_no, "expected `prefix ids<TAB>target id`, found no tab")
        })?;
        let prefix = parse_ids(path, line_no, prefix)?;
        let target = parse_ids(path, line_no, target)?;
        if prefix.is_empty() {
            return Err(DataError::parse(path, line_no, "empty session prefix"));
        }
        if target.len() != 1 {
            return Err(DataError::parse(path, line_no, "expected exactly one target id"));
        }
        if let Some(bad) = prefix.iter().chain(&target).find(|&&id| id == 0) {
            return Err(DataError::parse(path, line_no, format!("item id {bad} is padding")));
        }
        out.push(Example { prefix, target: target[0] });
    }
    Ok(out)
}

/// Reads one space-separated session per line.
pub fn read_sequences(path: &Path) -> Result<Vec<Vec<u32>>> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let ids = parse_ids(path, i + 1, line)?;
        if ids.contains(&0) {
            return Err(DataError::parse(path, i + 1, "item id 0 is padding"));
        }
        out.push(ids);
    }
    Ok(out)
}

/// Reads `items.tsv`; ids must be exactly `1..=n`, each once, in any order.
pub fn read_items(path: &Path) -> Result<Catalog> {
    let text = read_text(path)?;
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = match lines.next() {
        Some((_, h)) => h.split('\t').collect(),
        None => return Err(DataError::parse(path, 1, "empty file, expected a header line")),
    };
    let id_col = header
        .iter()
        .position(|c| *c == "item_id")
        .ok_or_else(|| DataError::parse(path, 1, "header has no `item_id` column"))?;
    let title_col = header.iter().position(|c| *c == "title");
    let prompt_col = header.iter().position(|c| *c == "short_title");
    let mut rows: Vec<(u32, usize, ItemInfo)> = Vec::new();
    for (i, line) in lines {
        let line_no = i + 1;
        if line.is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() != header.len() {
            return Err(DataError::parse(
                path,
                line_no,
                format!("expected {} columns, found {}", header.len(), cols.len()),
            ));
        }
        let id: u32 = cols[id_col]
            .parse()
            .map_err(|_| DataError::parse(path, line_no, format!("bad item_id {:?}", cols[id_col])))?;
        if id == 0 {
            return Err(DataError::parse(path, line_no, "item_id 0 is reserved for padding"));
        }
        let title = title_col.map(|c| cols[c].to_string()).unwrap_or_default();
        let prompt_title = prompt_col.map(|c| cols[c].to_string()).unwrap_or_else(|| title.clone());
        let fields = header
            .iter()
            .zip(&cols)
            .enumerate()
            .filter(|(c, _)| Some(*c) != title_col && Some(*c) != prompt_col && *c != id_col)
            .map(|(_, (k, v))| (k.to_string(), v.to_string()))
            .collect();
        rows.push((id, line_no, ItemInfo { title, prompt_title, fields }));
    }
    let n = rows.len();
    let mut items: Vec<Option<ItemInfo>> = vec![None; n];
    for (id, line_no, info) in rows {
        let slot = items.get_mut(id as usize - 1).ok_or_else(|| {
            DataError::parse(path, line_no, format!("item_id {id} outside 1..={n} (ids must be 1..n)"))
        })?;
        if slot.is_some() {
            return Err(DataError::parse(path, line_no, format!("duplicate item_id {id}")));
        }
        *slot = Some(info);
    }
    Ok(Catalog::new(
        items.into_iter().map(|i| i.expect("every slot filled: n rows, distinct ids in 1..=n")).collect(),
    ))
}

/// Reads a dataset folder; its name is the folder name.
pub fn read_dataset(dir: &Path) -> Result<Dataset> {
    if !dir.is_dir() {
        return Err(DataError::Other(format!("{}: not a dataset folder", dir.display())));
    }
    let train = read_examples(&dir.join(TRAIN))?;
    let test = read_examples(&dir.join(TEST))?;
    let seq_path = dir.join(SEQUENCES);
    let train_sequences = if seq_path.exists() {
        read_sequences(&seq_path)?
    } else {
        train.iter().map(|e| e.prefix.iter().copied().chain([e.target]).collect()).collect()
    };
    let items_path = dir.join(ITEMS);
    let catalog = if items_path.exists() {
        read_items(&items_path)?
    } else {
        untitled_catalog(&train, &test, &train_sequences)
    };
    validated(dir, Dataset { name: folder_name(dir), catalog, train, test, train_sequences })
}

/// A catalog without titles, sized by the largest item id in use.
pub(crate) fn untitled_catalog(train: &[Example], test: &[Example], sequences: &[Vec<u32>]) -> Catalog {
    let max = train
        .iter()
        .chain(test)
        .flat_map(|e| e.prefix.iter().chain([&e.target]))
        .chain(sequences.iter().flatten())
        .copied()
        .max()
        .unwrap_or(0);
    Catalog::untitled(max as usize)
}

/// The dataset name of a folder: its own name.
pub(crate) fn folder_name(dir: &Path) -> String {
    dir.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "dataset".into())
}

/// Validates a dataset read from `dir`, naming the folder in the error.
pub(crate) fn validated(dir: &Path, ds: Dataset) -> Result<Dataset> {
    ds.validate().map_err(|e| DataError::Other(format!("{}: {e}", dir.display())))?;
    Ok(ds)
}

fn write_ids(w: &mut dyn Write, ids: &[u32]) -> std::io::Result<()> {
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            w.write_all(b" ")?;
        }
        write!(w, "{id}")?;
    }
    Ok(())
}

pub fn write_examples(path: &Path, examples: &[Example]) -> Result<()> {
    write_atomic(path, |w| {
        for e in examples {
            write_ids(w, &e.prefix)?;
            writeln!(w, "\t{}", e.target)?;
        }
        Ok(())
    })
}

/// Titles and fields are written with tabs and newlines replaced by spaces (they are TSV cells).
pub fn write_items(path: &Path, catalog: &Catalog) -> Result<()> {
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    let field_names: Vec<String> =
        catalog.get(1).map(|i| i.fields.iter().map(|(k, _)| k.clone()).collect()).unwrap_or_default();
    write_atomic(path, |w| {
        write!(w, "item_id\ttitle\tshort_title")?;
        for f in &field_names {
            write!(w, "\t{f}")?;
        }
        writeln!(w)?;
        for (id, info) in catalog.iter() {
            write!(w, "{id}\t{}\t{}", clean(&info.title), clean(&info.prompt_title))?;
            for f in &field_names {
                write!(w, "\t{}", clean(info.field(f).unwrap_or("")))?;
            }
            writeln!(w)?;
        }
        Ok(())
    })
}

/// Writes the four files of a dataset folder, each atomically.
pub fn write_dataset(dir: &Path, ds: &Dataset) -> Result<()> {
    ds.validate()?;
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    write_examples(&dir.join(TRAIN), &ds.train)?;
    write_examples(&dir.join(TEST), &ds.test)?;
    write_atomic(&dir.join(SEQUENCES), |w| {
        for s in &ds.train_sequences {
            write_ids(w, s)?;
            writeln!(w)?;
        }
        Ok(())
    })?;
    write_items(&dir.join(ITEMS), &ds.catalog)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn reads_the_paper_layout() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), TRAIN, "1 2 3\t4\n2\t3\n");
        write(d.path(), TEST, "4 1\t2\n");
        write(d.path(), SEQUENCES, "1 2 3 4\n2 3\n5\n");
        write(
            d.path(),
            ITEMS,
            "item_id\tmovie_id\ttitle\tshort_title\tgenres\n2\t20\tB (1999)\tB\tDrama\n1\t10\tA (1995)\tA\tComedy\n3\t30\tC\tC\t-\n4\t40\tD\tD\t-\n5\t50\tE\tE\t-\n",
        );
        let ds = read_dataset(d.path()).unwrap();
        assert_eq!(ds.train.len(), 2);
        assert_eq!(ds.train[0], Example { prefix: vec![1, 2, 3], target: 4 });
        assert_eq!(ds.test[0].target, 2);
        assert_eq!(ds.train_sequences.len(), 3);
        assert_eq!(ds.n_items(), 5);
        assert_eq!(ds.catalog.title(1), "A (1995)");
        assert_eq!(ds.catalog.prompt_title(2), "B");
        assert_eq!(ds.catalog.get(2).unwrap().field("genres"), Some("Drama"));

        // round trip through the writer
        let out = tempfile::tempdir().unwrap();
        write_dataset(out.path(), &ds).unwrap();
        let again = read_dataset(out.path()).unwrap();
        assert_eq!(again.train, ds.train);
        assert_eq!(again.test, ds.test);
        assert_eq!(again.train_sequences, ds.train_sequences);
        assert_eq!(again.catalog, ds.catalog);
    }

    #[test]
    fn missing_optional_files_are_derived() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), TRAIN, "1 2\t3\n");
        write(d.path(), TEST, "3\t7\n");
        let ds = read_dataset(d.path()).unwrap();
        assert_eq!(ds.n_items(), 7);
        assert_eq!(ds.train_sequences, vec![vec![1, 2, 3]]);
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.tsv");
        for (text, needle) in [
            ("1 2\t3\n1 x\t2\n", ":2: expected an item id, found \"x\""),
            ("1 2 3\n", ":1: expected `prefix ids<TAB>target id`"),
            ("1\t2\n\t3\n", ":2: empty session prefix"),
            ("1\t2 3\n", ":1: expected exactly one target id"),
            ("1 0\t2\n", ":1: item id 0 is padding"),
            ("1\t-4\n", ":1: expected an item id"),
        ] {
            std::fs::write(&p, text).unwrap();
            let err = read_examples(&p).unwrap_err().to_string();
            assert!(err.contains("x.tsv") && err.contains(needle), "{err} vs {needle}");
        }
    }

    #[test]
    fn malformed_items_are_rejected() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(ITEMS);
        for (text, needle) in [
            ("id\ttitle\n1\tA\n", ":1: header has no `item_id`"),
            ("item_id\ttitle\n1\tA\n1\tB\n", ":3: duplicate item_id 1"),
            ("item_id\ttitle\n1\tA\n3\tB\n", ":3: item_id 3 outside 1..=2"),
            ("item_id\ttitle\n1\tA\textra\n", ":2: expected 2 columns, found 3"),
            ("item_id\ttitle\n0\tA\n", ":2: item_id 0 is reserved"),
            ("", ":1: empty file"),
        ] {
            std::fs::write(&p, text).unwrap();
            let err = read_items(&p).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} vs {needle}");
        }
    }

    #[test]
    fn ids_beyond_catalog_are_rejected() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), TRAIN, "1 2\t3\n");
        write(d.path(), TEST, "1\t9\n");
        write(d.path(), ITEMS, "item_id\ttitle\n1\ta\n2\tb\n3\tc\n");
        let err = read_dataset(d.path()).unwrap_err().to_string();
        assert!(err.contains("test example #1") && err.contains("9"), "{err}");
    }
}
