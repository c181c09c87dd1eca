//! A small made-up image dataset for trying eidn on a folder of one's own: white circles
//! (the normal class), squares and triangles (the defects) on a dark, noisy background, as
//! PNG and JPEG files in `ROOT/<class>/`. The README's walk-through and the tests use it.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::DataError;

/// Class folder names, in label order once loaded (sorted).
pub const SHAPES: [&str; 3] = ["circle", "square", "triangle"];
/// Side of the generated images.
pub const SIDE: u32 = 28;

/// One 28x28 grey image of shape `class` (an index into [`SHAPES`]), of random size and place.
pub fn shape(class: usize, rng: &mut impl Rng) -> image::GrayImage {
    let r = rng.gen_range(6.0..10.0f32);
    let (cx, cy) = (rng.gen_range(11.0..17.0f32), rng.gen_range(11.0..17.0f32));
    let noise: Vec<u8> = (0..SIDE * SIDE).map(|_| rng.gen_range(0..40)).collect();
    image::GrayImage::from_fn(SIDE, SIDE, |x, y| {
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let inside = match class {
            0 => dx * dx + dy * dy <= r * r,
            1 => dx.abs() <= r * 0.85 && dy.abs() <= r * 0.85,
            _ => dy <= r * 0.8 && dy >= -r && dx.abs() <= (dy + r) * 0.55,
        };
        let n = noise[(y * SIDE + x) as usize];
        image::Luma([if inside { 215 + n } else { n }])
    })
}

/// Writes `counts[c]` images of each shape into `root/<shape>/` (every third a JPEG), all
/// drawn from `seed`.
pub fn write_shapes(root: &Path, counts: [usize; 3], seed: u64) -> Result<(), DataError> {
    // Never into a folder that holds something: its files would be mixed with or replaced
    // by made-up ones.
    let non_empty = std::fs::read_dir(root).is_ok_and(|mut d| d.next().is_some());
    if non_empty {
        return Err(DataError::Layout {
            path: root.to_path_buf(),
            message: "is not empty; `eidn data example` writes only into a new or empty folder"
                .into(),
        });
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    for (c, name) in SHAPES.iter().enumerate() {
        let folder = root.join(name);
        std::fs::create_dir_all(&folder).map_err(|e| DataError::io(&folder, e))?;
        for i in 0..counts[c] {
            let ext = if i % 3 == 2 { "jpg" } else { "png" };
            let path = folder.join(format!("{i:04}.{ext}"));
            shape(c, &mut rng)
                .save(&path)
                .map_err(|error| DataError::Image { path, error })?;
        }
    }
    Ok(())
}

/// An MVTec AD-layout tree of the same shapes: `train/good/` (circles), `test/good/`,
/// `test/square/` and `test/triangle/` (the defect types), and a `ground_truth/` folder of
/// masks that loaders must skip. `counts`: training good, then per test folder.
pub fn write_mvtec(root: &Path, counts: [usize; 4], seed: u64) -> Result<(), DataError> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let folders = [
        ("train/good", 0, counts[0]),
        ("test/good", 0, counts[1]),
        ("test/square", 1, counts[2]),
        ("test/triangle", 2, counts[3]),
        ("ground_truth/square", 1, 2),
    ];
    for (dir, class, n) in folders {
        let folder = root.join(dir);
        std::fs::create_dir_all(&folder).map_err(|e| DataError::io(&folder, e))?;
        for i in 0..n {
            let path = folder.join(format!("{i:03}.png"));
            shape(class, &mut rng)
                .save(&path)
                .map_err(|error| DataError::Image { path, error })?;
        }
    }
    Ok(())
}
