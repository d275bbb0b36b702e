//! Progress bars: the only place dmsrec draws them (libraries report events).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` training batches.
pub fn batches(len: u64, msg: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} batches {per_sec} eta {eta}")
            .expect("valid progress template"),
    );
    bar.set_message(msg.to_string());
    bar
}
