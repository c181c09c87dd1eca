//! Folders of image files in torchvision's ImageFolder layout: `ROOT/<class>/*.png|jpg|...`
//! (a seeded, stratified train/test split per class), or `ROOT/train/<class>/...` beside
//! `ROOT/test/<class>/...` (the given split). Class names are the folder names, labels their
//! sorted order. Images are decoded to one size and channel count (declared, or taken from
//! the images: their own size when all agree and it is at most 64x64, else 32x32) and packed
//! once into a cache file keyed by the listing (names, sizes, classes, options) and each
//! file's contents, so the next load reads that instead of decoding again. Concrete Cracks is such a folder.

use std::path::{Path, PathBuf};

use image::{ImageDecoder, ImageReader};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::files::warn_once;
use super::folder_cache::{fingerprint, read_cache, write_cache, Key, Listed};
use super::images::{decode_many, list_images, ImageFiles, MAX_SIDE};
use super::{DataError, Dataset, DatasetName, ImageSet};

/// Images at most this side keep their own size when no size is declared.
pub const MAX_NATIVE_SIDE: usize = 64;
/// The size used otherwise (the paper's 32x32).
pub const DEFAULT_SIDE: usize = 32;
/// An MVTec tree's photographs (700-1,024 px) default to the pretrained backbone's input
/// size for the built-in datasets: defects of a few pixels vanish at 32.
pub const MVTEC_SIDE: usize = 128;

#[derive(Clone, Debug, PartialEq)]
pub struct FolderOptions {
    /// Network input `[height, width]`; None: from the images.
    pub size: Option<[usize; 2]>,
    /// 1 (grey) or 3 (RGB); None: 1 when every image is grey, else 3.
    pub channels: Option<usize>,
    /// Share of each class held out for testing when there are no `train/` and `test/`.
    pub test_fraction: f64,
    /// `(folder, class name)` in label order; None: every subfolder, sorted, named as is.
    pub classes: Option<Vec<(String, String)>>,
    /// Cache file name (default `.eidn-cache.bin`) and folder (default: the root).
    pub cache_name: Option<String>,
    pub cache_dir: Option<PathBuf>,
    /// Appended to "not found" errors: how to get the data.
    pub missing_hint: Option<String>,
    /// The MVTec AD layout: `train/good/`, `test/good/` and `test/<defect type>/`; class 0 is
    /// `good`, the defect types follow in sorted order (`ground_truth/` is not read).
    pub mvtec: bool,
}

impl Default for FolderOptions {
    fn default() -> Self {
        FolderOptions {
            size: None,
            channels: None,
            test_fraction: Self::DEFAULT_TEST_FRACTION,
            classes: None,
            cache_name: None,
            cache_dir: None,
            missing_hint: None,
            mvtec: false,
        }
    }
}

impl FolderOptions {
    pub const DEFAULT_TEST_FRACTION: f64 = 0.2;

    /// What a declaration may get wrong, as a message.
    pub fn check(&self) -> Result<(), String> {
        if let Some(c) = self.channels {
            if c != 1 && c != 3 {
                return Err(format!("channels = {c}: use 1 (grey) or 3 (RGB)"));
            }
        }
        if let Some([h, w]) = self.size {
            if h == 0 || w == 0 || h > 512 || w > 512 {
                return Err(format!("size = [{h}, {w}]: each side must be 1..=512"));
            }
        }
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return Err(format!(
                "test_fraction = {}: must be in (0, 1)",
                self.test_fraction
            ));
        }
        Ok(())
    }

    fn cache_path(&self, root: &Path) -> PathBuf {
        let name = self.cache_name.as_deref().unwrap_or(".eidn-cache.bin");
        self.cache_dir.as_deref().unwrap_or(root).join(name)
    }
}

/// What the folder holds, before any image is decoded.
struct Listing {
    class_names: Vec<String>,
    /// Training files first, then the test files when the folders give the split.
    files: Vec<Listed>,
    /// How many of `files` are training files, when `train/` and `test/` give the split.
    n_train: Option<usize>,
}

/// The class names of the folder at `root`, from its listing alone.
pub fn class_names(
    root: &Path,
    name: DatasetName,
    options: &FolderOptions,
) -> Result<Vec<String>, DataError> {
    let (base, _) = layout(root, name, options)?;
    Ok(class_dirs(&base, name, options)?
        .into_iter()
        .map(|(_, n)| n)
        .collect())
}

/// The network input the images become: `[channels, height, width]`.
pub fn input_shape(
    root: &Path,
    name: DatasetName,
    options: &FolderOptions,
) -> Result<[usize; 3], DataError> {
    let listing = list(root, name, options, false)?;
    shape_of(&listing.files, name, options, false)
}

/// Loads the folder at `root` as dataset `name`; without `train/` and `test/` folders the
/// split is drawn with `seed`.
pub fn load(
    root: &Path,
    name: DatasetName,
    options: &FolderOptions,
    seed: u64,
) -> Result<Dataset, DataError> {
    let listing = list(root, name, options, true)?;
    let key = Key {
        root,
        files: &listing.files,
        class_names: &listing.class_names,
        n_train: listing.n_train,
        size: options.size,
        channels: options.channels,
    };
    let fingerprint = fingerprint(&key);
    let cache = options.cache_path(root);
    let all = match read_cache(&cache, &fingerprint, &key)? {
        Some(set) => set,
        None => {
            let shape = shape_of(&listing.files, name, options, true)?;
            let set = decode_all(&listing, shape)?;
            if let Err(e) = write_cache(&cache, &fingerprint, &key, &set) {
                // The data is still good; only the next load will be slower.
                eprintln!("warning: {name}: could not write the decoded-image cache: {e}");
            }
            set
        }
    };
    let (train_idx, test_idx) = match listing.n_train {
        Some(n) => ((0..n).collect(), (n..all.len()).collect()),
        None => split_indices(&all.labels, 1.0 - options.test_fraction, seed),
    };
    if listing.n_train.is_none() && (train_idx.is_empty() || test_idx.is_empty()) {
        let counts: Vec<String> = (listing.class_names.iter())
            .zip(all.class_counts())
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        return Err(layout_error(
            root,
            format!(
                "{name}: {} image(s) ({}); holding out {} of each class for testing leaves the {} split \
                 empty: add images, or give train/ and test/ folders",
                all.len(),
                counts.join(", "),
                options.test_fraction,
                if train_idx.is_empty() { "training" } else { "test" }
            ),
        ));
    }
    let dataset = Dataset {
        name,
        train: all.select(&train_idx),
        test: all.select(&test_idx),
    };
    dataset.train.check(root)?;
    dataset.test.check(root)?;
    Ok(dataset)
}

/// Per class, a seeded shuffle of that class's indices cut at `train_fraction`: stratified,
/// so both splits keep the classes' proportions (an unstratified cut left Concrete's
/// training split with fewer cracked than uncracked images for about half of all seeds, and
/// the 100 % ratio cell could not draw its anomalies). Each part is sorted, keeping the
/// folder order.
pub fn split_indices(labels: &[u8], train_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    for class in 0..classes {
        let mut idx: Vec<usize> = (0..labels.len())
            .filter(|&i| labels[i] as usize == class)
            .collect();
        idx.shuffle(&mut rng);
        let n_train = ((idx.len() as f64) * train_fraction).round() as usize;
        test.extend(idx.split_off(n_train.min(idx.len())));
        train.extend(idx);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

/// The MVTec AD layout's normal class folder.
pub const GOOD: &str = "good";

fn layout_error(path: &Path, message: String) -> DataError {
    DataError::Layout {
        path: path.to_path_buf(),
        message,
    }
}

/// The folder holding the class folders (the root, or `root/train` in the split layout) and
/// the test folder of the split layout.
fn layout(
    root: &Path,
    name: DatasetName,
    options: &FolderOptions,
) -> Result<(PathBuf, Option<PathBuf>), DataError> {
    if !root.is_dir() {
        return Err(DataError::Missing {
            dataset: name.as_str(),
            what: "the dataset folder".into(),
            dir: root.to_path_buf(),
            hint: options.missing_hint.clone().unwrap_or_else(|| {
                "A folder dataset is ROOT/<class>/<images>, or ROOT/train/<class>/... and \
                 ROOT/test/<class>/...; check the path in its declaration."
                    .into()
            }),
        });
    }
    let (train, test) = (root.join("train"), root.join("test"));
    if options.mvtec {
        for (dir, what) in [
            (train.join(GOOD), "train/good/ (the normal training images)"),
            (test.clone(), "test/ (good/ and one folder per defect type)"),
        ] {
            if !dir.is_dir() {
                return Err(layout_error(
                    root,
                    format!(
                        "{name}: no {what}; an MVTec AD category is ROOT/train/good/, \
                         ROOT/test/good/ and ROOT/test/<defect type>/"
                    ),
                ));
            }
        }
        return Ok((train, Some(test)));
    }
    if options.classes.is_none() && train.is_dir() && test.is_dir() {
        Ok((train, Some(test)))
    } else {
        Ok((root.to_path_buf(), None))
    }
}

/// `(folder, class name)` in label order: the declared ones, or the visible subfolders.
fn class_dirs(
    base: &Path,
    name: DatasetName,
    options: &FolderOptions,
) -> Result<Vec<(String, String)>, DataError> {
    if let Some(classes) = &options.classes {
        return Ok(classes.clone());
    }
    if options.mvtec {
        return mvtec_classes(base, name);
    }
    let dirs = subfolders(base, name)?;
    match dirs.len() {
        0 => Err(layout_error(
            base,
            format!("{name}: no class folders; put each class's images in a subfolder named after the class"),
        )),
        1 => Err(layout_error(
            base,
            format!(
                "{name}: only one class folder ({}); a dataset needs normal and anomalous classes",
                dirs[0].0
            ),
        )),
        n if n > 255 => Err(layout_error(base, format!("{name}: {n} class folders; at most 255 are supported"))),
        _ => Ok(dirs),
    }
}

/// `good`, then every defect type of `test/` in sorted order (`base` is `train/`).
fn mvtec_classes(base: &Path, name: DatasetName) -> Result<Vec<(String, String)>, DataError> {
    let test = base.with_file_name("test");
    let mut dirs: Vec<(String, String)> = subfolders(&test, name)?
        .into_iter()
        .filter(|(d, _)| d != GOOD && d != "ground_truth")
        .collect();
    if !test.join(GOOD).is_dir() {
        return Err(layout_error(
            &test,
            format!("{name}: no test/good/ folder: the test split needs normal images for an AUC"),
        ));
    }
    if dirs.is_empty() {
        return Err(layout_error(
            &test,
            format!("{name}: no defect type folder beside test/good/ (e.g. test/scratch/)"),
        ));
    }
    if dirs.len() > 254 {
        return Err(layout_error(
            &test,
            format!(
                "{name}: {} defect types; at most 254 are supported",
                dirs.len()
            ),
        ));
    }
    dirs.insert(0, (GOOD.to_string(), GOOD.to_string()));
    Ok(dirs)
}

/// The visible subfolders of `base`, sorted, as `(folder, name)`.
fn subfolders(base: &Path, name: DatasetName) -> Result<Vec<(String, String)>, DataError> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(base).map_err(|e| DataError::io(base, e))? {
        let entry = entry.map_err(|e| DataError::io(base, e))?;
        if !entry.path().is_dir() {
            continue;
        }
        let Some(file_name) = entry.file_name().to_str().map(str::to_string) else {
            return Err(layout_error(
                &entry.path(),
                format!("{name}: a class folder whose name is not valid UTF-8; rename it (class names are text in records and reports)"),
            ));
        };
        if !file_name.starts_with('.') {
            dirs.push((file_name.clone(), file_name));
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Lists every image, class by class; `warn`: say which non-image files were skipped.
fn list(
    root: &Path,
    name: DatasetName,
    options: &FolderOptions,
    warn: bool,
) -> Result<Listing, DataError> {
    let (base, test) = layout(root, name, options)?;
    let classes = class_dirs(&base, name, options)?;
    let mut skipped = ImageFiles::default();
    let mut files = Vec::new();
    // An MVTec tree trains on good images only; its defect types are test folders.
    let train_classes = if options.mvtec {
        &classes[..1]
    } else {
        &classes[..]
    };
    for (label, (dir, _)) in train_classes.iter().enumerate() {
        let folder = base.join(dir);
        if !folder.is_dir() {
            return Err(DataError::Missing {
                dataset: name.as_str(),
                what: format!("folder {dir}/"),
                dir: base.clone(),
                hint: options.missing_hint.clone().unwrap_or_default(),
            });
        }
        let n = files.len();
        list_class(&folder, label as u8, &mut files, &mut skipped)?;
        if files.len() == n {
            return Err(layout_error(
                &folder,
                format!(
                    "class folder holds no image files ({})",
                    super::images::IMAGE_EXTENSIONS.join(", ")
                ),
            ));
        }
    }
    let n_train = files.len();
    if let Some(test) = &test {
        for entry in std::fs::read_dir(test).map_err(|e| DataError::io(test, e))? {
            let entry = entry.map_err(|e| DataError::io(test, e))?;
            let dir = entry.file_name().to_string_lossy().to_string();
            let skipped = dir.starts_with('.') || (options.mvtec && dir == "ground_truth");
            if entry.path().is_dir() && !skipped && !classes.iter().any(|(d, _)| *d == dir) {
                return Err(layout_error(
                    &entry.path(),
                    "a test class that train/ does not have".into(),
                ));
            }
        }
        for (label, (dir, _)) in classes.iter().enumerate() {
            let folder = test.join(dir);
            if folder.is_dir() {
                list_class(&folder, label as u8, &mut files, &mut skipped)?;
            }
        }
        if files.len() == n_train {
            return Err(layout_error(test, "holds no test images".into()));
        }
        if options.mvtec {
            check_mvtec_test(test, &classes, &files[n_train..])?;
            check_disjoint(&files[..n_train], &files[n_train..])?;
        }
    }
    skipped.skipped.retain(|p| {
        !p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
    });
    if warn && !skipped.skipped.is_empty() {
        warn_once(format!(
            "warning: {name}: skipped {} file(s) that are not images ({}), e.g. {}",
            skipped.skipped.len(),
            super::images::IMAGE_EXTENSIONS.join(", "),
            skipped.skipped[0].display()
        ));
    }
    if warn {
        for (path, why) in &skipped.refused {
            warn_once(format!(
                "warning: {name}: not read: {}: {why}",
                path.display()
            ));
        }
    }
    Ok(Listing {
        class_names: classes.into_iter().map(|(_, n)| n).collect(),
        files,
        n_train: test.is_some().then_some(n_train),
    })
}

/// Every defect type (and good) of an MVTec test split holds at least one image.
fn check_mvtec_test(
    test: &Path,
    classes: &[(String, String)],
    files: &[Listed],
) -> Result<(), DataError> {
    for (label, (dir, _)) in classes.iter().enumerate() {
        if !files.iter().any(|f| f.2 as usize == label) {
            return Err(layout_error(
                &test.join(dir),
                format!(
                    "holds no image files ({})",
                    super::images::IMAGE_EXTENSIONS.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// No training image is also a test image (same bytes): it would be scored as seen. Only
/// files of equal length are read and compared.
fn check_disjoint(train: &[Listed], test: &[Listed]) -> Result<(), DataError> {
    use std::collections::HashMap;
    let mut by_len: HashMap<u64, Vec<&Path>> = HashMap::new();
    for (path, len, _) in train {
        by_len.entry(*len).or_default().push(path);
    }
    for (path, len, _) in test {
        for other in by_len.get(len).into_iter().flatten() {
            let a = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
            let b = std::fs::read(other).map_err(|e| DataError::io(other, e))?;
            if a == b {
                return Err(layout_error(
                    path,
                    format!(
                        "the same file as the training image {}: a test image must not be a training image",
                        other.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn list_class(
    folder: &Path,
    label: u8,
    files: &mut Vec<Listed>,
    skipped: &mut ImageFiles,
) -> Result<(), DataError> {
    let found = list_images(&[folder.to_path_buf()])?;
    skipped.skipped.extend(found.skipped);
    skipped.refused.extend(found.refused);
    for path in found.images {
        let len = std::fs::metadata(&path)
            .map_err(|e| DataError::io(&path, e))?
            .len();
        files.push((path, len, label));
    }
    Ok(())
}

/// The declared shape, or one read from the image headers (no pixel is decoded).
fn shape_of(
    files: &[Listed],
    name: DatasetName,
    options: &FolderOptions,
    say: bool,
) -> Result<[usize; 3], DataError> {
    if let (Some([h, w]), Some(c)) = (options.size, options.channels) {
        return Ok([c, h, w]);
    }
    let mut sizes: Option<((u32, u32), &Path)> = None;
    let mut mixed: Option<(&Path, (u32, u32))> = None;
    let mut colour = 0;
    for (path, _, _) in files {
        let (dims, is_colour) = header(path)?;
        colour += usize::from(is_colour);
        match sizes {
            None => sizes = Some((dims, path)),
            Some((first, _)) if first != dims && mixed.is_none() => mixed = Some((path, dims)),
            _ => {}
        }
    }
    let ((w, h), first) = sizes.expect("a listing holds at least one image per class");
    // By majority: one CMYK or colour-profiled JPEG must not make a grey dataset RGB.
    let channels = options
        .channels
        .unwrap_or(if 2 * colour > files.len() { 3 } else { 1 });
    if say && options.channels.is_none() && colour > 0 && colour < files.len() {
        warn_once(format!(
            "{name}: {colour} of {} images are in colour: read as {} (the majority); declare \
             channels = 1 or 3 to choose",
            files.len(),
            if channels == 3 { "RGB" } else { "grey" }
        ));
    }
    let [height, width] = match (options.size, mixed) {
        (Some(size), _) => size,
        (None, Some((other, (w2, h2)))) => {
            return Err(layout_error(
                other,
                format!(
                "{name}: images differ in size ({w2}x{h2} here, {w}x{h} in {}); declare the size \
                     to resize them to, e.g. size = [32, 32] in datasets.toml",
                first.display()
            ),
            ))
        }
        (None, None) if (h as usize) <= MAX_NATIVE_SIDE && (w as usize) <= MAX_NATIVE_SIDE => {
            [h as usize, w as usize]
        }
        (None, None) if options.mvtec => [MVTEC_SIDE, MVTEC_SIDE],
        (None, None) => [DEFAULT_SIDE, DEFAULT_SIDE],
    };
    if say {
        let n = files.len();
        warn_once(match (options.size, [height, width] == [h as usize, w as usize]) {
            (Some(_), _) => format!(
                "{name}: {n} images -> network input {channels}x{height}x{width} (the declared size)"
            ),
            (None, true) => format!("{name}: {n} images of {w}x{h} -> network input {channels}x{height}x{width}"),
            (None, false) => format!(
                "{name}: {n} images of {w}x{h} -> network input {channels}x{height}x{width} (larger \
                 than {MAX_NATIVE_SIDE}x{MAX_NATIVE_SIDE}: resized; declare size to choose)"
            ),
        });
    }
    Ok([channels, height, width])
}

/// Width, height and whether the image has colour, from its header.
fn header(path: &Path) -> Result<((u32, u32), bool), DataError> {
    let bad = |error| DataError::Image {
        path: path.to_path_buf(),
        error,
    };
    let reader = ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    let decoder = reader.into_decoder().map_err(bad)?;
    let (w, h) = decoder.dimensions();
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(layout_error(
            path,
            format!("image is {w}x{h}; images larger than {MAX_SIDE} pixels a side are refused"),
        ));
    }
    Ok(((w, h), decoder.color_type().has_color()))
}

/// Decodes and resizes every image on all cores; the first bad file is the error.
fn decode_all(listing: &Listing, shape: [usize; 3]) -> Result<ImageSet, DataError> {
    let paths: Vec<PathBuf> = listing.files.iter().map(|f| f.0.clone()).collect();
    let mut pixels = Vec::with_capacity(paths.len() * shape.iter().product::<usize>());
    for image in decode_many(&paths, shape) {
        pixels.extend(image?);
    }
    Ok(ImageSet {
        pixels,
        labels: listing.files.iter().map(|f| f.2).collect(),
        channels: shape[0],
        height: shape[1],
        width: shape[2],
        class_names: listing.class_names.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_seeded_disjoint_stratified_and_80_20() {
        // 700 negatives, 300 positives, interleaved.
        let labels: Vec<u8> = (0..1000).map(|i| u8::from(i % 10 >= 7)).collect();
        let (a_train, a_test) = split_indices(&labels, 0.8, 7);
        let (b_train, b_test) = split_indices(&labels, 0.8, 7);
        let (c_train, _) = split_indices(&labels, 0.8, 8);
        assert_eq!((a_train.len(), a_test.len()), (800, 200));
        assert_eq!((&a_train, &a_test), (&b_train, &b_test));
        assert_ne!(a_train, c_train);
        let mut all: Vec<usize> = a_train.iter().chain(&a_test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        // Issue 10 item 7: every seed keeps 80 % of each class in training.
        for seed in 0..50 {
            let (train, _) = split_indices(&labels, 0.8, seed);
            let positives = train.iter().filter(|&&i| labels[i] == 1).count();
            assert_eq!(
                (train.len() - positives, positives),
                (560, 240),
                "seed {seed}"
            );
        }
    }
}
