//! `--shard K/N`: every N-th cell starting at the K-th.

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

    pub fn takes(&self, cell_index: usize) -> bool {
        cell_index % self.count == self.index - 1
    }

    /// Suffix of this shard's records file.
    pub fn tag(&self) -> String {
        format!("{}-of-{}", self.index, self.count)
    }
}
