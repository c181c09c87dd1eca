//! Making sure the built-in datasets a command needs are here, fetching missing ones.

use std::path::Path;

use super::fetch::{fetch_dataset, urls_for, FetchOptions};
use super::manifest::Manifest;
use super::verify::{verify, DatasetReport, Status};
use super::{DataError, DatasetName};

/// Makes sure each built-in dataset in `datasets` is here, fetching missing ones
/// (checksummed, resumable) from their sources or `mirror`; returns their verification
/// reports. Concrete Cracks is left alone (it needs unpacking by hand, and the grid skips
/// its cells when it is absent), and so are the user's own datasets.
pub fn ensure(
    datasets: &[DatasetName],
    data_dir: &Path,
    mirror: Option<&str>,
    quiet: bool,
) -> Result<Vec<DatasetReport>, DataError> {
    let manifest = Manifest::builtin();
    let mut reports = Vec::new();
    for &name in datasets {
        if name == DatasetName::Concrete || !name.is_builtin() {
            continue;
        }
        let report = verify(name, data_dir, &manifest);
        match report.status {
            Status::Exact | Status::Variant | Status::Unverified | Status::Mismatch => {
                reports.push(report);
                continue;
            }
            Status::Corrupt => {
                return Err(DataError::Corrupt {
                    dataset: name.to_string(),
                    dir: report.dir,
                    message: report.message.unwrap_or_default(),
                })
            }
            Status::Missing => {}
        }
        let entry = manifest.dataset(name).ok_or_else(|| DataError::Manifest {
            path: "the built-in manifest".into(),
            message: format!("{name} is not in it"),
        })?;
        let base = mirror.map(|m| format!("{}/{name}", m.trim_end_matches('/')));
        eprintln!("{name} is not in {}: downloading it", report.dir.display());
        let options = FetchOptions {
            base_url: base.clone(),
            progress: !quiet,
            ..FetchOptions::default()
        };
        let dir = name.dir(data_dir);
        if let Err(e) = fetch_dataset(entry, &dir, &options) {
            // No empty folder left behind to look like a dataset (partial downloads stay,
            // so the next run resumes them).
            if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_none()) {
                let _ = std::fs::remove_dir(&dir);
            }
            // Files are fetched in order and the first failure stops the fetch: the first
            // file still absent is the one whose sources were tried.
            let tried: Vec<String> = entry
                .files
                .iter()
                .find(|f| !dir.join(&f.name).is_file())
                .map(|f| urls_for(f, base.as_deref()))
                .unwrap_or_default();
            return Err(DataError::FetchFailed {
                dataset: name.to_string(),
                dir: report.dir,
                error: e.to_string(),
                tried: tried.join(", "),
            });
        }
        let after = verify(name, data_dir, &manifest);
        if !after.status.usable() {
            return Err(DataError::NotVerified {
                dataset: name.to_string(),
                dir: after.dir,
                message: after.message.unwrap_or_default(),
            });
        }
        reports.push(after);
    }
    Ok(reports)
}
