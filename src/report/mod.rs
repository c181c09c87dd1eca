//! Reports (temporary scaffold while the grid runs).
use std::path::Path;

use crate::experiment::{ExperimentError, Record};

pub struct Report;
impl Report {
    pub fn build(_results: &Path) -> Result<Report, ExperimentError> {
        Ok(Report)
    }
    pub fn write(&self, _out: &Path) -> Result<(), ExperimentError> {
        Ok(())
    }
    pub fn terminal_tables(&self) -> String {
        String::new()
    }
}
pub struct Thresholds;
impl Thresholds {
    pub fn load(_p: &Path) -> Result<Thresholds, ExperimentError> {
        Ok(Thresholds)
    }
    pub fn check(&self, _r: &[Record]) -> Vec<String> {
        Vec::new()
    }
    pub fn table(&self, _r: &[Record]) -> String {
        String::new()
    }
}
