//! `--shard K/N`: the K-th of N shares of a grid's cells, dealt by estimated cost
//! (`experiment::cost::deal`).

use crate::experiment::ExperimentError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub fn parse(s: &str) -> Result<Shard, ExperimentError> {
        let bad = || ExperimentError::Shard(s.to_string());
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = k.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Suffix of this shard's records file.
    pub fn tag(&self) -> String {
        format!("{}-of-{}", self.index, self.count)
    }
}
