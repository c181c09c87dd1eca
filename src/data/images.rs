//! Image files as network input: listing the image files under paths, and decoding one into
//! the `channels x height x width` u8 layout the loaders produce (grey or RGB, resized with
//! a triangle filter). Concrete Cracks and `eidn score` both go through here, so an image
//! is preprocessed the same way wherever it comes from.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{ImageReader, Limits};

use super::DataError;

/// File extensions read as images (lower case).
pub const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

/// Larger images are refused before decoding (a 20000 x 20000 RGB image is 1.2 GB).
pub const MAX_SIDE: u32 = 8192;

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// What [`list_images`] found.
#[derive(Debug, Default, PartialEq)]
pub struct ImageFiles {
    /// Image files, sorted; each real file once.
    pub images: Vec<PathBuf>,
    /// Files in the folders without an image extension.
    pub skipped: Vec<PathBuf>,
    /// What was not read, with the reason: symbolic links to folders (never followed, so a
    /// link loop cannot multiply the images), links that leave the folder given, and
    /// special files (pipes, devices, sockets), which could hang or never end.
    pub refused: Vec<(PathBuf, &'static str)>,
}

/// The image files among `paths`: files as given (whatever their extension; each must be a
/// regular file, or a link to one), folders walked recursively for regular files with an
/// image extension. Inside a folder, a symbolic link to a file is read once per real file
/// and only when it stays inside that folder; links to folders are not followed.
pub fn list_images(paths: &[PathBuf]) -> Result<ImageFiles, DataError> {
    let mut found = ImageFiles::default();
    let mut seen = std::collections::HashSet::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| DataError::io(p, e))?;
        if meta.is_dir() {
            let root = p.canonicalize().map_err(|e| DataError::io(p, e))?;
            walk(p, &root, &mut found, &mut seen)?;
        } else if meta.is_file() {
            found.images.push(p.clone());
        } else {
            return Err(DataError::Layout {
                path: p.clone(),
                message: "not a regular file or folder (a pipe, device or socket); refused".into(),
            });
        }
    }
    found.images.sort();
    Ok(found)
}

/// Adds the images under `dir` (inside the real folder `root`) to `found`.
fn walk(
    dir: &Path,
    root: &Path,
    found: &mut ImageFiles,
    seen: &mut std::collections::HashSet<PathBuf>,
) -> Result<(), DataError> {
    let mut entries: Vec<(PathBuf, std::fs::FileType)> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .map(|e| {
            let e = e.map_err(|e| DataError::io(dir, e))?;
            let kind = e.file_type().map_err(|err| DataError::io(e.path(), err))?;
            Ok((e.path(), kind))
        })
        .collect::<Result<_, DataError>>()?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, kind) in entries {
        let (is_dir, is_file) = if kind.is_symlink() {
            match (std::fs::metadata(&path), path.canonicalize()) {
                (Ok(m), _) if m.is_dir() => {
                    found
                        .refused
                        .push((path, "a link to a folder (not followed)"));
                    continue;
                }
                (Ok(m), Ok(real)) if m.is_file() && real.starts_with(root) => {
                    if !seen.insert(real) {
                        continue;
                    }
                    (false, true)
                }
                (Ok(m), _) if m.is_file() => {
                    found
                        .refused
                        .push((path, "a link out of the folder (not read)"));
                    continue;
                }
                (Ok(_), _) => (false, false),
                (Err(_), _) => {
                    found.refused.push((path, "a broken link"));
                    continue;
                }
            }
        } else {
            (kind.is_dir(), kind.is_file())
        };
        if is_dir {
            walk(&path, root, found, seen)?;
        } else if !is_file {
            found
                .refused
                .push((path, "not a regular file (a pipe, device or socket)"));
        } else if is_image(&path) {
            // Each real file once, whichever of its names (a link, the file) comes first.
            let real = path.canonicalize().map_err(|e| DataError::io(&path, e))?;
            if kind.is_symlink() || seen.insert(real) {
                found.images.push(path);
            }
        } else {
            found.skipped.push(path);
        }
    }
    Ok(())
}

/// Files larger than this are refused before they are read (an uncompressed 8192 x 8192 RGB
/// TIFF is 192 MiB).
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// The bytes of an image file, refusing special files and files over [`MAX_FILE_BYTES`]
/// before reading them.
pub fn read_image_file(path: &Path) -> Result<Vec<u8>, DataError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let meta = file.metadata().map_err(|e| DataError::io(path, e))?;
    let refuse = |message: String| DataError::Layout {
        path: path.to_path_buf(),
        message,
    };
    if !meta.is_file() {
        return Err(refuse(
            "not a regular file (a pipe, device or socket); refused".into(),
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(refuse(format!(
            "{} bytes; image files over {} MiB are refused",
            meta.len(),
            MAX_FILE_BYTES >> 20
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // Bounded even if the file grows while it is read.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| DataError::io(path, e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(refuse(format!(
            "grew past {} MiB while it was read; refused",
            MAX_FILE_BYTES >> 20
        )));
    }
    Ok(bytes)
}

/// Decodes `path` into `dst` as `[channels, height, width]` u8 (channels 1 = grey, 3 = RGB),
/// resized when its size differs.
pub fn decode_into(path: &Path, shape: [usize; 3], dst: &mut [u8]) -> Result<(), DataError> {
    let [channels, height, width] = shape;
    assert_eq!(dst.len(), channels * height * width, "destination size");
    let bytes = read_image_file(path)?;
    if bytes.starts_with(&[0xFF, 0xD8]) {
        check_jpeg_complete(path, &bytes)?;
    }
    let bad = |error| DataError::Image {
        path: path.to_path_buf(),
        error,
    };
    let mut reader = ImageReader::new(Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    reader.limits(limits);
    let img = reader.decode().map_err(bad)?;
    let (w, h) = (width as u32, height as u32);
    let plane = height * width;
    match channels {
        1 => {
            let grey = img.to_luma8();
            let grey = if grey.dimensions() == (w, h) {
                grey
            } else {
                image::imageops::resize(&grey, w, h, FilterType::Triangle)
            };
            dst.copy_from_slice(grey.as_raw());
        }
        3 => {
            let rgb = img.to_rgb8();
            let rgb = if rgb.dimensions() == (w, h) {
                rgb
            } else {
                image::imageops::resize(&rgb, w, h, FilterType::Triangle)
            };
            for (i, px) in rgb.pixels().enumerate() {
                for c in 0..3 {
                    dst[c * plane + i] = px.0[c];
                }
            }
        }
        _ => {
            return Err(DataError::BadHeader {
                path: path.to_path_buf(),
                message: format!("{channels} channels: only 1 (grey) or 3 (RGB) images are read"),
            })
        }
    }
    Ok(())
}

/// Decodes every path into `shape` on all cores; per path, its pixels or its error.
pub fn decode_many(paths: &[PathBuf], shape: [usize; 3]) -> Vec<Result<Vec<u8>, DataError>> {
    let len = shape.iter().product::<usize>();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = paths.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .chunks(per_thread)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|p| {
                            let mut dst = vec![0u8; len];
                            decode_into(p, shape, &mut dst).map(|_| dst)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("image decoder thread panicked"))
            .collect()
    })
}

/// The `image` crate decodes a JPEG cut short without complaint (it pads the missing scan),
/// as libjpeg does only with a warning; a complete file has an end-of-image marker (FF D9)
/// after its last start-of-scan (FF DA). Entropy-coded data cannot contain FF D9 (0xFF bytes
/// are stuffed as FF 00), so the marker cannot be faked by image data.
pub(crate) fn check_jpeg_complete(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let bad = |message: &str| {
        Err(DataError::TruncatedImage {
            path: path.to_path_buf(),
            message: message.into(),
        })
    };
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return bad("no start-of-image marker");
    }
    let find_last = |marker: u8| bytes.windows(2).rposition(|w| w == [0xFF, marker]);
    match (find_last(0xDA), find_last(0xD9)) {
        (None, _) => bad("no image scan"),
        (Some(sos), Some(eoi)) if eoi > sos => Ok(()),
        _ => bad("no end-of-image marker after the last scan"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_and_colour_resized_and_bad_files_named() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("a.png");
        image::RgbImage::from_fn(56, 56, |x, _| {
            image::Rgb([if x < 28 { 0 } else { 255 }, 0, 0])
        })
        .save(&png)
        .unwrap();
        let mut grey = vec![0u8; 28 * 28];
        decode_into(&png, [1, 28, 28], &mut grey).unwrap();
        assert!(grey[0] < 10 && grey[27] > 40, "{:?}", &grey[..28]);
        let mut rgb = vec![0u8; 3 * 32 * 32];
        decode_into(&png, [3, 32, 32], &mut rgb).unwrap();
        assert!(
            rgb[31] > 250 && rgb[32 * 32 + 31] == 0,
            "red plane, then green"
        );

        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not an image").unwrap();
        let err = decode_into(&text, [1, 28, 28], &mut grey)
            .unwrap_err()
            .to_string();
        assert!(err.contains("notes.txt"), "{err}");
        let found = list_images(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!((found.images, found.skipped), (vec![png], vec![text]));
    }

    #[test]
    fn cut_jpegs_are_refused() {
        let mut jpeg = Vec::new();
        image::RgbImage::from_fn(24, 24, |x, y| {
            image::Rgb([(x * 9) as u8, (y * 9) as u8, 90])
        })
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
        let p = Path::new("a.jpg");
        assert!(check_jpeg_complete(p, &jpeg).is_ok());
        let cut = &jpeg[..jpeg.len() / 3];
        // The decoder alone takes the cut file; the marker check does not.
        let err = check_jpeg_complete(p, cut).unwrap_err();
        assert!(err.to_string().contains("a.jpg"), "{err}");
        assert!(check_jpeg_complete(p, b"not a jpeg").is_err());
    }
}
