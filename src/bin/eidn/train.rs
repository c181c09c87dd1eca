//! `eidn train`, `evaluate`, `select-recipe` and `select-method`: one method on one protocol,
//! and the choice of one by validation on the training split.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use eidn::backbone::{cache, weights, FeatureSpec};
use eidn::data::catalog::declare_spec;
use eidn::data::ensure::ensure;
use eidn::data::manifest::Manifest;
use eidn::data::protocol::{parse_classes, OneVsRest};
use eidn::data::verify::{verify, Status};
use eidn::data::{load, DatasetName};
use eidn::metrics::{average_precision, roc_auc};
use eidn::model::{
    parse_device, Arch, CalibrationSource, EidnParams, TrainOptions, CONFIG_FILE, WEIGHTS_FILE,
};
use eidn::pipeline::{PretrainedModel, PRETRAINED_CONFIG_FILE, PRETRAINED_FEATURES_FILE};

use crate::cli::{EvaluateArgs, SelectMethodArgs, SelectRecipeArgs, TrainArgs};
use crate::saved::{Saved, Weights};
use crate::CHECK_FAILED;

pub fn evaluate(args: &EvaluateArgs, data_dir: &Path, mirror: Option<&str>) -> Result<ExitCode> {
    let device = parse_device(&args.device)?;
    let models_dir = weights::models_dir(data_dir);
    let at = Weights {
        models_dir: &models_dir,
        mirror,
        progress: !args.json,
    };
    let model = Saved::load(&args.model, &device, &at)?;
    report_evaluation(model, data_dir, Some(&models_dir), args.json)
}

pub fn train(args: &TrainArgs, data_dir: &Path, mirror: Option<&str>) -> Result<ExitCode> {
    // A model already there is the user's: refused before any work unless replaced on purpose.
    let existing = [
        CONFIG_FILE,
        WEIGHTS_FILE,
        PRETRAINED_CONFIG_FILE,
        PRETRAINED_FEATURES_FILE,
    ]
    .map(|f| args.out.join(f));
    if !args.force && existing.iter().any(|p| p.exists()) {
        bail!(
            "{} already holds a model; pass --force to replace it, or choose another --out",
            args.out.display()
        );
    }
    let device = parse_device(&args.device)?;
    let params = EidnParams {
        embed_dim: args.embed_dim,
        margin: args.margin,
        lr: args.lr,
        epochs: args.epochs,
        steps_per_epoch: args.steps_per_epoch,
        batch_size: args.batch_size,
        seed: args.seed,
        augment: args.augment,
        arch: Arch {
            same_padding: args.same_padding,
            width: args.width,
            blocks: args.blocks,
        },
    }
    .check()?;
    if !(args.anomaly_ratio > 0.0 && args.anomaly_ratio <= 100.0) {
        bail!(
            "--anomaly-ratio {} must be in (0, 100] (labelled anomalies per normal training image)",
            args.anomaly_ratio
        );
    }
    let dataset = DatasetName::resolve(&args.dataset)?;
    if args.backbone_size.is_some() && args.method.pretrained().is_none() {
        bail!("--backbone-size is for the pretrained methods; --method eidn reads pixels");
    }
    let features = FeatureSpec::for_dataset_at(dataset, args.backbone_size)
        .map_err(|e| anyhow::anyhow!("--backbone-size: {e}"))?;
    let names = dataset.class_names()?;
    let normal = parse_classes(&args.normal_class, &names)
        .map_err(|e| anyhow::anyhow!("--normal-class {:?}: {e}", args.normal_class))?;
    let protocol = match args.shots {
        Some(k) => OneVsRest::few_shot(
            dataset,
            normal[0],
            k,
            None,
            None,
            dataset.is_mvtec(),
            args.seed,
        ),
        None if dataset.is_mvtec() => bail!(
            "{dataset} is an MVTec tree, whose training split holds good images only: pass \
             --shots K to label K anomalies of its test split (they leave the test set)"
        ),
        None => OneVsRest::new(dataset, normal[0], args.anomaly_ratio, args.seed),
    }
    .with_normal(&normal);
    let report = match ensure(&[protocol.dataset], data_dir, mirror, args.quiet)?.pop() {
        Some(report) => report,
        // Concrete Cracks and the user's own: not fetched, only checked.
        None => verify(protocol.dataset, data_dir, &Manifest::builtin()),
    };
    // A mismatch only warns (below); data that does not load is an error now.
    if matches!(report.status, Status::Missing | Status::Corrupt) {
        bail!(
            "{dataset} in {}: {}",
            report.dir.display(),
            report.message.as_deref().unwrap_or("does not load")
        );
    }
    let status = report.status.label(report.variant.as_deref());
    if report.status == Status::Mismatch {
        eprintln!(
            "WARNING: {}\nWARNING: training on data that is not the published {}: the result is not comparable \
             (recorded as \"checksum mismatch\" in eidn.json)",
            report.message.as_deref().unwrap_or("a file does not match its checksum"),
            protocol.dataset
        );
    }
    let data = load(protocol.dataset, data_dir, args.seed)?;
    let mut pools = protocol.pools(&data)?;
    // The threshold's images: normal ones the network never trains on, so that they score
    // as new normal images will.
    let held_out = pools.hold_out_normal(args.calibration_share, args.seed);
    // The test set must be able to give an AUC before any training.
    protocol.test_set(&data)?;
    let effective = pools.anomalous.len() as f64 / pools.normal.len() as f64;
    let how = match args.method.pretrained() {
        None => format!(
            "{} steps of {} triplets",
            args.epochs * args.steps_per_epoch,
            args.batch_size
        ),
        Some(m) => format!("{m} on pretrained features"),
    };
    if !args.quiet {
        eprintln!(
            "training on {} normal ({}{}) + {} anomalous images (anomaly ratio {}{}), {how}",
            pools.normal.len(),
            protocol.normal_name(&data.train.class_names),
            if held_out.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} more held out to calibrate the threshold",
                    held_out.len()
                )
            },
            pools.anomalous.len(),
            round4(effective),
            if args.shots.is_none()
                && (effective - args.anomaly_ratio).abs() > 1e-3 * args.anomaly_ratio
            {
                format!(
                    "; --anomaly-ratio {} rounds to this count, at least 1",
                    args.anomaly_ratio
                )
            } else {
                String::new()
            },
        );
    }
    let status_name = status.clone();
    let mut model = match args.method.pretrained() {
        None => {
            let options = TrainOptions {
                progress: !args.quiet,
                protocol: Some(protocol),
                reference_ops: args.reference_ops,
                data: status,
            };
            Saved::Eidn(params.fit(&pools, &device, &options)?)
        }
        Some(method) => {
            let models_dir = weights::models_dir(data_dir);
            weights::ensure(features.backbone, &models_dir, mirror, !args.quiet)?;
            let table = cache::table(&data, &features, &models_dir, args.quiet)?;
            let mut m = PretrainedModel::fit(method, table, &pools, args.seed)?;
            m.config.protocol = Some(protocol);
            m.config.data = status_name;
            Saved::Pretrained(m)
        }
    };
    if held_out.is_empty() {
        eprintln!(
            "warning: --calibration-share 0: the threshold is calibrated on the training images, \
             which the model was fitted on; expect more than --fpr {} of new normal images \
             flagged",
            args.fpr
        );
        model.calibrate(&pools.normal, args.fpr, CalibrationSource::Training)?;
    } else {
        model.calibrate(
            &held_out,
            args.fpr,
            CalibrationSource::HeldOut {
                share: args.calibration_share,
            },
        )?;
    };
    if let Some(c) = model.calibration().filter(|c| !c.resolves(args.fpr)) {
        eprintln!(
            "warning: {} calibration images cannot resolve --fpr {}: the threshold is their \
             highest score (about 1 in {} new normal images flagged); hold out more \
             (--calibration-share) or ask for a higher --fpr",
            c.scores.len(),
            args.fpr,
            c.scores.len() + 1
        );
    }
    model.set_data(dataset.declaration().map(|d| d.spec()), data.fingerprint());
    model.save(&args.out)?;
    if !args.quiet {
        eprintln!("saved {} ({:.1} s)", args.out.display(), model.training().1);
    }
    report_evaluation(model, data_dir, None, args.json)
}

/// A candidates file's text and the path its errors name: `file`, else the committed one
/// (compiled in as `builtin`, named `committed`).
fn candidates(file: Option<&Path>, builtin: &str, committed: &str) -> Result<(String, PathBuf)> {
    Ok(match file {
        Some(f) => (
            std::fs::read_to_string(f).with_context(|| format!("{}", f.display()))?,
            f.to_path_buf(),
        ),
        None => (builtin.to_string(), PathBuf::from(committed)),
    })
}

/// `eidn select-recipe`: validation of the EIDN+ candidates on a dataset's training split.
pub fn select_recipe(
    args: &SelectRecipeArgs,
    data_dir: &Path,
    mirror: Option<&str>,
) -> Result<ExitCode> {
    use eidn::experiment::recipe;
    let dataset = DatasetName::resolve(&args.dataset)?;
    let (text, origin) = candidates(
        args.candidates.as_deref(),
        recipe::CANDIDATES,
        "configs/eidn_plus_candidates.toml",
    )?;
    let spec = recipe::select_spec(&text, &origin, dataset)?;
    ensure(&[dataset], data_dir, mirror, args.quiet)?;
    let device = parse_device(&args.device)?;
    // Only the training split goes in: the selection has no way to read the test split.
    let train = load(dataset, data_dir, 0)?.train;
    let selection = recipe::select(&train, dataset, &spec, &device, !args.quiet)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create it", args.out.display()))?;
    let md = selection.markdown(&spec);
    eidn::experiment::write_atomic(&args.out.join(format!("{dataset}.md")), md.as_bytes())?;
    eidn::experiment::write_atomic(
        &args.out.join(format!("{dataset}.toml")),
        selection.recipe_toml().as_bytes(),
    )?;
    out!("{md}")?;
    let name = &selection.rows[selection.chosen].0;
    if selection.matches_committed() {
        out!("chosen: {name}, the recipe committed in configs/eidn_plus.toml")?;
        Ok(ExitCode::SUCCESS)
    } else {
        out!(
            "chosen: {name}, which is NOT the recipe committed in configs/eidn_plus.toml; \
             the chosen one is in {}",
            args.out.join(format!("{dataset}.toml")).display()
        )?;
        Ok(ExitCode::from(CHECK_FAILED))
    }
}

/// `eidn select-method`: validation of the methods on pretrained features on a dataset's
/// training split.
pub fn select_method(
    args: &SelectMethodArgs,
    data_dir: &Path,
    mirror: Option<&str>,
) -> Result<ExitCode> {
    use eidn::experiment::method_choice;
    let dataset = DatasetName::resolve(&args.dataset)?;
    let features = FeatureSpec::for_dataset_at(dataset, args.backbone_size)
        .map_err(|e| anyhow::anyhow!("--backbone-size: {e}"))?;
    let (text, origin) = candidates(
        args.candidates.as_deref(),
        method_choice::CANDIDATES,
        "configs/method_candidates.toml",
    )?;
    let spec = method_choice::select_spec(&text, &origin, dataset)?;
    ensure(&[dataset], data_dir, mirror, args.quiet)?;
    let models_dir = weights::models_dir(data_dir);
    weights::ensure(features.backbone, &models_dir, mirror, !args.quiet)?;
    let data = load(dataset, data_dir, 0)?;
    method_choice::check(&data.train, dataset, &spec)?;
    // The table is the whole dataset's (its cache file is), but features are looked up by
    // image: only the training split goes to the selection, so it cannot read a test image.
    let table = cache::table(&data, &features, &models_dir, args.quiet)?;
    let selection = method_choice::select(&data.train, table, dataset, &spec, !args.quiet)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create it", args.out.display()))?;
    let stem = format!("{dataset}-{}", features.size);
    let md = selection.markdown(&spec);
    eidn::experiment::write_atomic(&args.out.join(format!("{stem}.md")), md.as_bytes())?;
    eidn::experiment::write_atomic(
        &args.out.join(format!("{stem}.toml")),
        selection.choice_toml(&spec).as_bytes(),
    )?;
    out!("{md}")?;
    let name = selection.rows[selection.chosen].method;
    if selection.matches_committed() {
        out!("chosen: {name}, the choice committed in configs/method_choice.toml")?;
        Ok(ExitCode::SUCCESS)
    } else {
        out!(
            "chosen: {name}, which is NOT the choice committed in configs/method_choice.toml \
             for {dataset} at {} px; the choice is in {}",
            features.size,
            args.out.join(format!("{stem}.toml")).display()
        )?;
        Ok(ExitCode::from(CHECK_FAILED))
    }
}

/// Test ROC AUC and AP of `model` on its protocol's test set. With `models_dir`, a
/// pretrained model reads the test images' features from the dataset's feature cache.
fn report_evaluation(
    model: Saved,
    data_dir: &Path,
    models_dir: Option<&Path>,
    json: bool,
) -> Result<ExitCode> {
    let protocol = model
        .protocol()
        .cloned()
        .context("the model records no data protocol, so its test set is unknown")?;
    if let Some(spec) = model.dataset() {
        declare_spec(spec, "the model's config")?;
    }
    let data = load(protocol.dataset, data_dir, protocol.seed)?;
    if let Some(then) = model.data_fingerprint() {
        let now = data.fingerprint();
        if now != *then {
            bail!(
                "{} changed since the model was trained: {} training and {} test images then, {} and {} now \
                 (or the same counts with other images); retrain on the data as it is, or restore it",
                protocol.dataset,
                then.train,
                then.test,
                now.train,
                now.test
            );
        }
    }
    let test = protocol.test_set(&data)?;
    let model = match models_dir {
        Some(dir) => model.use_dataset_features(&data, dir, json)?,
        None => model,
    };
    let start = Instant::now();
    let scores = model.score(&test.images)?;
    let score_seconds = start.elapsed().as_secs_f64();
    let auc = roc_auc(&scores, &test.is_anomaly)?;
    let ap = average_precision(&scores, &test.is_anomaly)?;
    // What the recorded threshold does on the test split: the rate of normal images it
    // flags (what --fpr asked for) and of anomalies it catches.
    let calibration = model.calibration();
    let ((steps, train_seconds), (n_normal, n_anomalous)) = (model.training(), model.counts());
    let rates = calibration.map(|c| {
        let flagged = |anomalous: bool| {
            let of: Vec<f64> = (scores.iter().zip(&test.is_anomaly))
                .filter(|(_, &a)| a == anomalous)
                .map(|(&s, _)| s)
                .collect();
            of.iter().filter(|&&s| s > c.threshold).count() as f64 / of.len().max(1) as f64
        };
        (flagged(false), flagged(true))
    });
    if json {
        let out = serde_json::json!({
            "auc": auc,
            "ap": ap,
            "method": model.method(),
            "train_seconds": train_seconds,
            "score_seconds": score_seconds,
            "steps": steps,
            "dataset": protocol.dataset,
            "normal_class": protocol.normal_class,
            "normal_classes": protocol.normal_classes(),
            "normal_name": protocol.normal_name(&data.test.class_names),
            "anomaly_ratio": protocol.anomaly_ratio,
            "n_normal": n_normal,
            "n_anomalous": n_anomalous,
            "effective_anomaly_ratio": n_anomalous as f64 / n_normal.max(1) as f64,
            "seed": protocol.seed,
            "n_test": test.images.len(),
            "n_test_anomalies": test.is_anomaly.iter().filter(|&&a| a).count(),
            "threshold": calibration.map(|c| c.threshold),
            "requested_fpr": calibration.map(|c| c.fpr),
            "calibration": calibration.map(|c| c.source),
            "n_calibration": calibration.map(|c| c.scores.len()),
            "test_fpr": rates.map(|r| r.0),
            "test_tpr": rates.map(|r| r.1),
        });
        out!("{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        out!(
            "{} normal {} at anomaly ratio {}: test ROC AUC {auc:.4}, AP {ap:.4} ({} test images; {})",
            protocol.dataset,
            protocol.normal_name(&data.test.class_names),
            protocol.anomaly_ratio,
            test.images.len(),
            model.describe_training()
        )?;
        if let (Some(c), Some((fpr, tpr))) = (calibration, rates) {
            let on = match c.source {
                CalibrationSource::HeldOut { .. } => "held-out normal",
                CalibrationSource::Training => "normal training",
            };
            out!(
                "at the threshold {:.4} (--fpr {} on {} {on} images): {:.2} % of the test's normal images flagged, {:.2} % of its anomalies",
                c.threshold,
                c.fpr,
                c.scores.len(),
                100.0 * fpr,
                100.0 * tpr
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `x` to 4 significant decimals for messages (1e-9 stays readable).
fn round4(x: f64) -> String {
    if x >= 1e-3 {
        format!("{x:.4}")
    } else {
        format!("{x:.3e}")
    }
}
