//! Reading a profile (built-in or file) and checking every setting once.

use std::path::Path;

use super::spec::{ClassRef, Profile, StageId, ValidProfile, BUILTIN};
use crate::data::DatasetName;
use crate::experiment::ExperimentError;
use crate::model::deep_sad::DeepSadParams;

impl Profile {
    /// A built-in profile by name, or a TOML file by path.
    pub fn resolve(name_or_path: &str) -> Result<ValidProfile, ExperimentError> {
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Profile::parse(text, Path::new(&format!("configs/{name_or_path}.toml")));
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            return Err(ExperimentError::Profile {
                path: path.to_path_buf(),
                message: format!(
                    "no such file, and not a built-in profile ({})",
                    names.join(", ")
                ),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| ExperimentError::io(path, e))?;
        Profile::parse(&text, path)
    }

    /// Parses and checks; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<ValidProfile, ExperimentError> {
        let profile: Profile = toml::from_str(text).map_err(|e| ExperimentError::Profile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        profile.declare_inline(path)?.check(path)
    }

    /// Declares the stages' inline datasets (`folder:PATH`, `idx:PATH`) and names each stage's
    /// dataset by its declared name: the dataset registry is filled here, before any check
    /// reads it.
    pub fn declare_inline(mut self, path: &Path) -> Result<Profile, ExperimentError> {
        for (i, s) in self.stages.iter_mut().enumerate() {
            if s.dataset.as_str().contains(':') {
                s.dataset = DatasetName::resolve(s.dataset.as_str()).map_err(|e| {
                    ExperimentError::Profile {
                        path: path.to_path_buf(),
                        message: format!("stage {} ({}): {e}", i + 1, s.id.as_str()),
                    }
                })?;
            }
        }
        Ok(self)
    }

    /// Checks every setting and resolves each stage's classes (names to labels, the default
    /// to every class), so the checked profile, which runs record, needs no dataset
    /// declaration to be read back. Inline datasets must be declared first
    /// ([`Profile::declare_inline`]).
    pub fn check(mut self, path: &Path) -> Result<ValidProfile, ExperimentError> {
        let bad = |message: String| {
            Err(ExperimentError::Profile {
                path: path.to_path_buf(),
                message,
            })
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad(format!(
                "name {:?} must be non-empty letters, digits, - or _ (it names the results folder)",
                self.name
            ));
        }
        if self.seeds.is_empty() {
            return bad("seeds is empty".into());
        }
        // The size alone is checked: every dataset's backbone takes the same sides.
        if let Err(e) =
            crate::backbone::FeatureSpec::for_dataset_at(DatasetName::Mnist, self.backbone_size)
        {
            return bad(format!("backbone_size: {e}"));
        }
        if self.stages.is_empty() {
            return bad("no [[stage]]".into());
        }
        let train = self.train.clone();
        let deep_sad = self.deep_sad.clone();
        for (i, s) in self.stages.iter_mut().enumerate() {
            let at = format!("stage {} ({})", i + 1, s.id.as_str());
            if let Err(e) = s.train_spec(&train).params(0).check() {
                return bad(format!("{at}: {e}"));
            }
            if s.id.is_few_shot() {
                let k = s.shots.as_deref().unwrap_or_default();
                if !s.ratios.is_empty() || k.is_empty() || k.contains(&0) {
                    return bad(format!(
                        "{at}: a few-shot stage takes shots (a non-empty list of counts >= 1, e.g. [1, 5, 10]) instead of ratios"
                    ));
                }
                if s.gamma_l.is_some() || s.pollution.is_some() || s.pairs.is_some() {
                    return bad(format!(
                        "{at}: gamma_l, pollution and pairs belong to deep_sad stages"
                    ));
                }
                if s.train_anomaly_classes.is_some() || s.test_anomaly_classes.is_some() {
                    return bad(format!(
                        "{at}: a few-shot stage chooses its known and tested types itself"
                    ));
                }
            } else if s.shots.is_some() {
                return bad(format!(
                    "{at}: shots belongs to few_shot and few_shot_hard stages"
                ));
            } else if s.id == StageId::DeepSad {
                let g = s.gamma_l.as_deref().unwrap_or_default();
                if !s.ratios.is_empty() || g.is_empty() || g.iter().any(|g| !(0.0..1.0).contains(g))
                {
                    return bad(format!(
                        "{at}: a deep_sad stage takes gamma_l (a non-empty list in [0, 1)) instead of ratios"
                    ));
                }
                if !(0.0..1.0).contains(&s.pollution.unwrap_or(0.0)) {
                    return bad(format!("{at}: pollution must be in [0, 1)"));
                }
                if let Some(p) = s.pairs.iter().flatten().find(|[n, k]| n == k) {
                    return bad(format!(
                        "{at}: pair {p:?}: the known anomaly class is the normal one"
                    ));
                }
            } else {
                if s.ratios.is_empty() || s.ratios.iter().any(|r| !(*r > 0.0 && r.is_finite())) {
                    return bad(format!(
                        "{at}: ratios must be a non-empty list of numbers > 0"
                    ));
                }
                if s.gamma_l.is_some() || s.pollution.is_some() || s.pairs.is_some() {
                    return bad(format!(
                        "{at}: gamma_l, pollution and pairs belong to deep_sad stages"
                    ));
                }
            }
            if s.reducers.iter().any(|r| r.is_deep_sad()) {
                let p = DeepSadParams {
                    train: deep_sad.clone(),
                    supervised: true,
                    seed: 0,
                };
                if let Err(e) = p.check() {
                    return bad(format!("[deep_sad]: {e}"));
                }
            }
            if s.seeds.as_ref().is_some_and(|v| v.is_empty()) {
                return bad(format!("{at}: seeds is empty"));
            }
            if s.reducers.is_empty() || s.detectors.is_empty() {
                return bad(format!("{at}: reducers and detectors must not be empty"));
            }
            // Names are needed only to read class names or to list every class.
            let names = s.dataset.class_names();
            let needs_names = match &s.classes {
                None => s.dataset != DatasetName::Concrete,
                Some(c) => c.iter().any(|c| {
                    matches!(c, ClassRef::Names(n) if n.split(['+', ',']).any(|p| p.trim().parse::<u8>().is_err()))
                }),
            };
            let names = match names {
                Ok(n) => Some(n),
                Err(e) if needs_names => return bad(format!("{at}: {e}")),
                Err(_) => None,
            };
            let classes: Vec<ClassRef> = match &s.classes {
                None if s.dataset == DatasetName::Concrete || s.dataset.is_mvtec() => {
                    vec![ClassRef::Label(0)]
                }
                None => (0..names.as_ref().map_or(0, |n| n.len()) as u8)
                    .map(ClassRef::Label)
                    .collect(),
                Some(c) if c.is_empty() => {
                    return bad(format!(
                        "{at}: classes = []: name at least one normal class, or leave classes out for every class"
                    ))
                }
                Some(c) => {
                    let mut out = Vec::new();
                    for class in c {
                        match class.labels(names.as_deref()) {
                            Ok(l) => out.push(ClassRef::of_labels(&l)),
                            Err(e) => return bad(format!("{at}: {e}")),
                        }
                    }
                    out
                }
            };
            s.classes = Some(classes);
            if let Some(n) = &names {
                let others = s
                    .train_anomaly_classes
                    .iter()
                    .flatten()
                    .chain(s.test_anomaly_classes.iter().flatten())
                    .chain(s.pairs.iter().flatten().flatten());
                for &c in others {
                    if c as usize >= n.len() {
                        return bad(format!("{at}: class {c} out of range for {}", s.dataset));
                    }
                }
            }
        }
        Ok(ValidProfile(self))
    }
}
