//! What every network's training shares: the options that do not change what is learned,
//! and the progress bar.

use indicatif::{ProgressBar, ProgressStyle};

use crate::data::protocol::OneVsRest;

/// Options of a training run that do not change what is learned.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    pub progress: bool,
    pub protocol: Option<OneVsRest>,
    /// Train the conv blocks with candle's own ops even on CPU (slower; the reference the
    /// fast path is checked against).
    pub reference_ops: bool,
    /// The data copy's verification status, recorded in `eidn.json`.
    pub data: Option<String>,
}

pub(crate) fn progress_bar(visible: bool, total: u64) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("[{elapsed_precise}] [{bar:30}] {pos}/{len} {msg} eta {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar
}
