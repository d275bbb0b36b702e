use std::path::{Path, PathBuf};

pub type Result<T> = std::result::Result<T, DataError>;

/// Errors of the data layer. Parse errors always name the file and the 1-based line.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}:{line}: {msg}", path.display())]
    Parse { path: PathBuf, line: usize, msg: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("invalid dataset: {0}")]
    Invalid(String),
    #[error("{0}")]
    Other(String),
}

impl DataError {
    pub fn parse(path: &Path, line: usize, msg: impl Into<String>) -> Self {
        DataError::Parse { path: path.to_path_buf(), line, msg: msg.into() }
    }

    pub fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io { path: path.to_path_buf(), source }
    }
}
