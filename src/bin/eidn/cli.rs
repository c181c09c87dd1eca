//! The command line's definitions (clap), kept apart from what the commands do, as ripgrep
//! keeps its flags. Values are parsed into their types here, so a typo lists the valid ones.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use eidn::data::DatasetName;
use eidn::experiment::{Shard, StageId};
use eidn::report::{parse_pair, Method};

#[derive(Parser)]
#[command(
    name = "eidn",
    version,
    about = "Enforced Isolation Deep Network: anomaly detection in images with a few labelled anomalies",
    after_help = "Exit status: 0 success, 1 a check failed (regress below a threshold, verify \
                  found a missing or mismatched file), 2 an error."
)]
pub struct Cli {
    /// Data directory (default: $EIDN_DATA_DIR, else ./datasets when it exists, else the
    /// per-user data folder ~/.local/share/eidn/datasets).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where missing datasets are downloaded from instead of their canonical sources
    /// (files are fetched as <URL>/<dataset>/<file name>).
    #[arg(long, global = true, value_name = "URL", env = "EIDN_DATA_MIRROR")]
    pub data_mirror: Option<String>,
    /// A TOML file declaring your own datasets (read besides datasets.toml in the data
    /// directory); see the README's "Your own images".
    #[arg(long, global = true, value_name = "FILE")]
    pub datasets: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Check, describe and download the datasets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Check and download pretrained backbone weights (models folder: $EIDN_MODELS_DIR, else
    /// models/ in the data directory).
    #[command(subcommand)]
    Weights(WeightsCommand),
    /// Train an EIDN encoder on one-vs-rest pools, or fit a method on pretrained features,
    /// and save it (eidn.json or pretrained.json, beside a safetensors file).
    Train(TrainArgs),
    /// Score the test set of a saved model's protocol: ROC AUC and average precision.
    Evaluate(EvaluateArgs),
    /// Score image files or folders with a saved encoder: score and verdict per image.
    Score(ScoreArgs),
    /// Run a profile's grid (resuming where a previous run stopped), then write its report.
    Reproduce(ReproduceArgs),
    /// Write the markdown report and charts from a results folder (all shards merged).
    Report(ReportArgs),
    /// Run a profile and fail, naming each cell, when a mean AUC is below its threshold.
    Regress(RegressArgs),
    /// Merge results or report folders (several machines', several shards') into one results
    /// folder, refusing results that disagree; then `eidn report --results` it.
    Merge(MergeArgs),
    /// Choose the EIDN+ recipe of a dataset by validation on its training pools (the test
    /// split is never read); exits 1 when the choice differs from configs/eidn_plus.toml.
    SelectRecipe(SelectRecipeArgs),
    /// Choose the method on pretrained features a dataset's Deep SAD report trusts, by
    /// validation on its training split (the test split is never read); exits 1 when the
    /// choice differs from configs/method_choice.toml.
    SelectMethod(SelectMethodArgs),
}

#[derive(Args)]
pub struct SelectRecipeArgs {
    /// mnist or cifar10 (a section of the candidates file).
    #[arg(long, value_name = "NAME")]
    pub dataset: String,
    /// Candidates file (default: the committed configs/eidn_plus_candidates.toml).
    #[arg(long, value_name = "FILE")]
    pub candidates: Option<PathBuf>,
    /// Folder for `<dataset>.md` (the validation table) and `<dataset>.toml` (the chosen
    /// recipe).
    #[arg(long, value_name = "DIR", default_value = "reports/eidn_plus")]
    pub out: PathBuf,
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: String,
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct SelectMethodArgs {
    /// A dataset with a section in the candidates file (mnist, cifar10, or your own).
    #[arg(long, value_name = "NAME")]
    pub dataset: String,
    /// The backbone's input side in pixels (default: the dataset's, 128 for MNIST and
    /// CIFAR-10).
    #[arg(long, value_name = "PX")]
    pub backbone_size: Option<usize>,
    /// Candidates file (default: the committed configs/method_candidates.toml).
    #[arg(long, value_name = "FILE")]
    pub candidates: Option<PathBuf>,
    /// Folder for `<dataset>-<size>.md` (the validation table) and `<dataset>-<size>.toml`
    /// (the choice).
    #[arg(long, value_name = "DIR", default_value = "reports/method_selection")]
    pub out: PathBuf,
    #[arg(long)]
    pub quiet: bool,
}

/// `--only`'s values: the stage ids, listed by clap when one is mistyped.
fn stage_parser() -> impl TypedValueParser<Value = StageId> {
    PossibleValuesParser::new(StageId::ALL.map(StageId::as_str))
        .map(|s| StageId::parse(&s).expect("clap admits only the listed stage ids"))
}

fn parse_shard(s: &str) -> Result<Shard, String> {
    Shard::parse(s).map_err(|e| e.to_string())
}

/// `cpu`, `cuda` or `cuda:N`.
fn parse_device(s: &str) -> Result<String, String> {
    let ok = s == "cpu"
        || s == "cuda"
        || s.strip_prefix("cuda:")
            .is_some_and(|n| n.parse::<usize>().is_ok());
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not a device; use cpu, cuda or cuda:N"))
    }
}

#[derive(Args)]
pub struct GridArgs {
    /// A built-in profile (paper, quick, ci) or a TOML file.
    #[arg(long, default_value = "quick")]
    pub profile: String,
    /// Results folder (default: results/<profile name>).
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
    /// Run every N-th cell starting at the K-th (1-based), e.g. for a SLURM array job.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Only these stages, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = stage_parser())]
    pub only: Vec<StageId>,
    /// Only these seeds, comma-separated (e.g. `--seeds 0` to finish one seed of every cell
    /// first); the report still counts coverage against all of the profile's seeds.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub seeds: Vec<u64>,
    /// cpu, or cuda[:N] with the `cuda` feature.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: String,
    /// No per-cell lines.
    #[arg(long)]
    pub quiet: bool,
    /// Cells run at once (default: one per core, each on one thread; with fewer, the cores
    /// are shared between them); records are the same for any number.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=256))]
    pub jobs: Option<u64>,
    /// Print the cells and networks left and the estimated wall time on this machine (from
    /// a few calibration steps), then stop: nothing is fetched, trained or written.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args)]
pub struct ReproduceArgs {
    #[command(flatten)]
    pub grid: GridArgs,
    /// Report folder (default: reports/<profile name>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Seed the results folder with the records of a committed report (or of another results
    /// folder) first, so the grid continues where that run stopped.
    #[arg(long, value_name = "DIR")]
    pub resume_from: Option<PathBuf>,
    /// Write the report into a folder eidn did not make (its README.md and results files are
    /// replaced).
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub struct MergeArgs {
    /// The results or report folders to merge.
    #[arg(required = true, value_name = "DIR")]
    pub sources: Vec<PathBuf>,
    /// The results folder they go into (created if missing; its own records stay).
    #[arg(long, value_name = "DIR")]
    pub into: PathBuf,
}

#[derive(Args)]
pub struct ReportArgs {
    /// A results folder written by `eidn reproduce`, or a report folder (it carries its
    /// records: the report is rendered again from them).
    #[arg(long, value_name = "DIR")]
    pub results: PathBuf,
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The profile whose records count (default: the one the newest run recorded).
    #[arg(long)]
    pub profile: Option<String>,
    /// Average records of builds with different numerics versions (refused by default: their
    /// arithmetic differs); each table still names its builds.
    #[arg(long)]
    pub mix_builds: bool,
    /// Also compare method A with method B on their common tasks (paired differences,
    /// bootstrap interval, Wilcoxon test), e.g. `eidn:pca/isolation_forest`; repeatable.
    #[arg(long, value_name = "A:B", value_parser = parse_pair)]
    pub compare: Vec<(Method, Method)>,
    /// Write the report into a folder eidn did not make (its README.md and results files are
    /// replaced).
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub struct RegressArgs {
    #[command(flatten)]
    pub grid: GridArgs,
    /// TOML file of per-cell minimum mean AUCs (the floors).
    #[arg(long, value_name = "FILE")]
    pub thresholds: PathBuf,
    /// Folder of golden mean AUCs, one file per CPU family; without this CPU family's file
    /// only the floors are checked.
    #[arg(long, value_name = "DIR", default_value = "tests/regression/golden")]
    pub golden: PathBuf,
    /// Write this run's mean AUCs as this CPU family's golden values (when the floors pass),
    /// after a change that moves numbers on purpose.
    #[arg(long)]
    pub refresh_golden: bool,
}

#[derive(Args)]
pub struct TrainArgs {
    /// mnist, cifar10, concrete, a dataset declared in datasets.toml, or folder:PATH /
    /// idx:PATH.
    #[arg(long, value_name = "NAME")]
    pub dataset: String,
    /// The normal class, by label or name (e.g. 3 or cat), or several (good,ok); every
    /// other class is anomalous.
    #[arg(long, value_name = "CLASS[,CLASS...]")]
    pub normal_class: String,
    /// Labelled training anomalies as a fraction of the normal training images.
    #[arg(long, default_value_t = 0.01)]
    pub anomaly_ratio: f64,
    /// Exactly K labelled anomalies instead of --anomaly-ratio (DevNet's few-shot protocol,
    /// drawn from every anomaly class); on an mvtec dataset they come from the test split and
    /// leave it.
    #[arg(long, value_name = "K")]
    pub shots: Option<usize>,
    /// eidn trains the paper's network (the flags below); the pretrained methods fit on
    /// EfficientNet-Lite0 ImageNet features (weights fetched on first use): pretrained_knn
    /// and pretrained_mahalanobis use no labels, pretrained_logreg learns from the labelled
    /// anomalies, head_devnet / head_deep_sad / head_eidn train a small network on them, and
    /// pretrained_knn_logreg / pretrained_mahalanobis_logreg average a label-free score with
    /// logistic regression's. The network's flags (epochs to augment) do not apply to them.
    #[arg(long, value_enum, default_value = "eidn")]
    pub method: TrainMethod,
    /// The pretrained methods' backbone input side in pixels, a multiple of 32 up to 512
    /// (default: 128 for MNIST and CIFAR-10, 224 for your own images).
    #[arg(long, value_name = "PX")]
    pub backbone_size: Option<usize>,
    #[arg(long, default_value_t = 50)]
    pub epochs: usize,
    #[arg(long, default_value_t = 100)]
    pub steps_per_epoch: usize,
    /// Triplets per step.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// The loss margin alpha.
    #[arg(long, default_value_t = 0.2)]
    pub margin: f64,
    /// Embedding dimension l.
    #[arg(long, default_value_t = 2)]
    pub embed_dim: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Training-time augmentation: none (the paper), shift:N (digits: up to N pixels), or
    /// crop-flip:N (natural images: pad N, random crop, left-right flip).
    #[arg(long, default_value = "none", value_name = "KIND")]
    pub augment: eidn::model::Augment,
    /// Zero-pad the 3x3 convs ("same"; the paper's are valid).
    #[arg(long)]
    pub same_padding: bool,
    /// Multiply the conv and dense widths (1: the paper's 32, 64, 128).
    #[arg(long, default_value_t = 1)]
    pub width: usize,
    /// Conv + pool blocks: 2 (the paper) or 3.
    #[arg(long, default_value_t = 2)]
    pub blocks: usize,
    /// Seeds the anomaly draw, the weights and the triplet sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, or cuda[:N] with the `cuda` feature.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: String,
    /// Folder for the model (model.safetensors and eidn.json, or features.safetensors and
    /// pretrained.json).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace the model already in `--out`.
    #[arg(long)]
    pub force: bool,
    /// The score threshold recorded for `eidn score`: flags at most this fraction of new
    /// normal images (calibrated on the held-out ones).
    #[arg(long, default_value_t = 0.01, value_parser = parse_fpr)]
    pub fpr: f64,
    /// Share of the normal training images held out of training to calibrate the threshold
    /// on. 0 calibrates on the training images themselves, which the network pulled to the
    /// origin: new normal images then score higher and more than --fpr of them are flagged.
    #[arg(long, default_value_t = 0.1, value_parser = parse_share)]
    pub calibration_share: f64,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Train the conv blocks with candle's own ops instead of the fast CPU path (slower;
    /// for checking the fast path).
    #[arg(long)]
    pub reference_ops: bool,
    /// Print the evaluation as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A share of the normal training images to hold out, in [0, 0.5].
fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=0.5).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a share in [0, 0.5], e.g. 0.1")),
    }
}

/// A false-positive rate in (0, 1).
fn parse_fpr(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a false-positive rate in (0, 1), e.g. 0.01"
        )),
    }
}

/// What `eidn train` fits.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum TrainMethod {
    Eidn,
    PretrainedKnn,
    PretrainedMahalanobis,
    PretrainedLogreg,
    HeadDevnet,
    HeadDeepSad,
    HeadEidn,
    PretrainedKnnLogreg,
    PretrainedMahalanobisLogreg,
}

impl TrainMethod {
    /// The method on pretrained features, if it is one.
    pub fn pretrained(self) -> Option<eidn::pipeline::PretrainedMethod> {
        use eidn::pipeline::PretrainedMethod as P;
        match self {
            TrainMethod::Eidn => None,
            TrainMethod::PretrainedKnn => Some(P::PretrainedKnn),
            TrainMethod::PretrainedMahalanobis => Some(P::PretrainedMahalanobis),
            TrainMethod::PretrainedLogreg => Some(P::PretrainedLogreg),
            TrainMethod::HeadDevnet => Some(P::HeadDevnet),
            TrainMethod::HeadDeepSad => Some(P::HeadDeepSad),
            TrainMethod::HeadEidn => Some(P::HeadEidn),
            TrainMethod::PretrainedKnnLogreg => Some(P::PretrainedKnnLogreg),
            TrainMethod::PretrainedMahalanobisLogreg => Some(P::PretrainedMahalanobisLogreg),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScoreFormat {
    Table,
    Csv,
    Json,
}

#[derive(Args)]
pub struct ScoreArgs {
    /// A folder written by `eidn train`.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Image files (PNG, JPEG, BMP, TIFF), or folders searched recursively for them.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Call an image anomalous above this score (default: the threshold `train` calibrated).
    #[arg(long, conflicts_with = "fpr", value_parser = parse_threshold)]
    pub threshold: Option<f64>,
    /// Recalibrate: the threshold that flags at most this fraction of new normal images
    /// (from the calibration images' scores that `train` kept).
    #[arg(long, value_parser = parse_fpr)]
    pub fpr: Option<f64>,
    /// table, csv (path,score,percentile,verdict) or json (one object per line).
    #[arg(long, value_enum, default_value = "table")]
    pub format: ScoreFormat,
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: String,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct EvaluateArgs {
    /// A folder written by `eidn train`.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum WeightsCommand {
    /// Is each backbone's weights file there with its SHA-256? Exits 1 when one is not.
    Verify(WeightsArgs),
    /// Download missing weights (checksummed, resumable; --data-mirror URL: URL/models/).
    Fetch(WeightsArgs),
}

#[derive(Args)]
pub struct WeightsArgs {
    /// Backbone (default: every one eidn knows).
    #[arg(long, value_name = "NAME", value_parser = PossibleValuesParser::new(
        eidn::backbone::BackboneKind::ALL.map(eidn::backbone::BackboneKind::as_str)))]
    pub backbone: Option<String>,
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Subcommand)]
pub enum DataCommand {
    /// Check every file against the manifest's SHA-256 and count records per split and class;
    /// exits 1 when a requested dataset is missing, mismatched or corrupt.
    Verify(VerifyArgs),
    /// Download missing files from their canonical sources, checking size and SHA-256.
    Fetch(FetchArgs),
    /// Write a small made-up folder dataset (circles are normal; squares and triangles are
    /// defects) to try your-own-images commands on.
    Example(ExampleArgs),
}

#[derive(Args)]
pub struct ExampleArgs {
    /// Folder to write `circle/`, `square/` and `triangle/` into.
    pub dir: PathBuf,
    /// Images per class: circles, squares, triangles.
    #[arg(long, default_value = "400,40,40", value_parser = parse_counts, value_name = "C,S,T")]
    pub counts: [usize; 3],
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// A finite score threshold (NaN would call every image normal).
fn parse_threshold(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t.is_finite() => Ok(t),
        _ => Err(format!("{s:?} is not a finite number")),
    }
}

/// Three comma-separated counts.
fn parse_counts(s: &str) -> Result<[usize; 3], String> {
    let parts: Vec<usize> = s
        .split(',')
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{s:?}: {e}"))?;
    <[usize; 3]>::try_from(parts).map_err(|_| format!("{s:?}: give three counts, e.g. 400,40,40"))
}

/// `--dataset` of `data verify` / `data fetch`: a name, or all of them.
pub fn datasets_named(which: &str) -> Result<Vec<DatasetName>, eidn::data::DataError> {
    if which == "all" {
        let mut all = DatasetName::BUILTIN.to_vec();
        all.extend(eidn::data::catalog::declared());
        return Ok(all);
    }
    DatasetName::resolve_all(which)
}

#[derive(Args)]
pub struct VerifyArgs {
    /// mnist, cifar10, concrete, a declared dataset, folder:PATH, idx:PATH, mvtec:PATH, or all.
    #[arg(long, default_value = "all", value_name = "NAME")]
    pub dataset: String,
    /// Print one JSON array (an object per dataset) instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct FetchArgs {
    /// mnist, cifar10, concrete or all (your own datasets are not downloaded).
    #[arg(long, default_value = "all", value_name = "NAME")]
    pub dataset: String,
    /// Download this dataset's files from this URL instead (as <URL>/<file name>).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Download the original files even when a usable copy (e.g. a variant) is present.
    #[arg(long)]
    pub force: bool,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}
