//! Training-time augmentation, applied on the fly to each raw u8 image a step draws (the
//! dataset is never copied): a random shift for digits and other images a flip would change,
//! or torchvision's pad-and-random-crop plus a horizontal flip for natural images. Off by
//! default (the paper trains without it); the draws come from the trainer's seed.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Largest shift / padding accepted, in pixels.
pub const MAX_SHIFT: usize = 16;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Augment {
    /// The paper's training: images as they are.
    #[default]
    None,
    /// Shift by up to `max` pixels in x and y (zero fill).
    Shift { max: usize },
    /// Pad by `pad` pixels, crop back at a random offset, flip left-right with p = 1/2.
    CropFlip { pad: usize },
}

impl Augment {
    pub fn is_none(&self) -> bool {
        *self == Augment::None
    }

    /// Writes image `src` (`[channels, height, width]` u8) into `dst` as f32 in [0, 1],
    /// augmented with draws from `rng` (none drawn for `Augment::None`).
    pub fn apply(&self, src: &[u8], shape: [usize; 3], rng: &mut impl Rng, dst: &mut [f32]) {
        let (max, flips) = match *self {
            Augment::None => {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = f32::from(s) * (1.0 / 255.0);
                }
                return;
            }
            Augment::Shift { max } => (max as isize, false),
            Augment::CropFlip { pad } => (pad as isize, true),
        };
        let dy = rng.gen_range(-max..=max);
        let dx = rng.gen_range(-max..=max);
        let flip = flips && rng.gen_bool(0.5);
        let [c, h, w] = shape;
        for ch in 0..c {
            let plane = ch * h * w;
            for y in 0..h {
                let sy = y as isize + dy;
                let row = &mut dst[plane + y * w..plane + (y + 1) * w];
                if sy < 0 || sy >= h as isize {
                    row.fill(0.0);
                    continue;
                }
                let src_row = &src[plane + sy as usize * w..plane + (sy as usize + 1) * w];
                for (x, d) in row.iter_mut().enumerate() {
                    let x = if flip { w - 1 - x } else { x };
                    let sx = x as isize + dx;
                    *d = if sx < 0 || sx >= w as isize {
                        0.0
                    } else {
                        f32::from(src_row[sx as usize]) * (1.0 / 255.0)
                    };
                }
            }
        }
    }
}

impl fmt::Display for Augment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Augment::None => write!(f, "none"),
            Augment::Shift { max } => write!(f, "shift:{max}"),
            Augment::CropFlip { pad } => write!(f, "crop-flip:{pad}"),
        }
    }
}

impl FromStr for Augment {
    type Err = String;

    /// `none`, `shift:N` or `crop-flip:N` (N in 1..=16 pixels).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("augmentation {s:?}: use none, shift:N or crop-flip:N (N in 1..={MAX_SHIFT})")
        };
        if s == "none" {
            return Ok(Augment::None);
        }
        let (kind, n) = s.split_once(':').ok_or_else(bad)?;
        let n: usize = n.parse().map_err(|_| bad())?;
        if !(1..=MAX_SHIFT).contains(&n) {
            return Err(bad());
        }
        match kind {
            "shift" => Ok(Augment::Shift { max: n }),
            "crop-flip" => Ok(Augment::CropFlip { pad: n }),
            _ => Err(bad()),
        }
    }
}

impl TryFrom<String> for Augment {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Augment> for String {
    fn from(a: Augment) -> String {
        a.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// A 1x4x4 image 1..=16 (row-major), as f32 x 255 for readable comparisons.
    fn run(a: Augment, seed: u64) -> Vec<u8> {
        let src: Vec<u8> = (1..=16).collect();
        let mut dst = vec![0.0; 16];
        a.apply(
            &src,
            [1, 4, 4],
            &mut Xoshiro256PlusPlus::seed_from_u64(seed),
            &mut dst,
        );
        dst.iter().map(|v| (v * 255.0).round() as u8).collect()
    }

    #[test]
    fn none_is_the_plain_image_and_shifts_move_pixels_with_zero_fill() {
        assert_eq!(run(Augment::None, 0), (1..=16).collect::<Vec<u8>>());
        let mut seen = std::collections::HashSet::new();
        for seed in 0..200 {
            let out = run(Augment::Shift { max: 1 }, seed);
            // Every output pixel is zero or the source pixel at one common offset.
            let offsets: std::collections::HashSet<(isize, isize)> = (0..16)
                .filter(|&i| out[i] != 0)
                .map(|i| {
                    let v = out[i] as isize - 1;
                    (v / 4 - (i as isize / 4), v % 4 - (i as isize % 4))
                })
                .collect();
            assert_eq!(offsets.len(), 1, "seed {seed}: {out:?}");
            seen.extend(offsets);
        }
        assert_eq!(
            seen.len(),
            9,
            "all 9 shifts of at most 1 pixel occur: {seen:?}"
        );
        assert_eq!(
            run(Augment::Shift { max: 1 }, 7),
            run(Augment::Shift { max: 1 }, 7)
        );
    }

    #[test]
    fn crop_flip_flips_half_the_time() {
        let flipped = (0..400)
            .map(|seed| run(Augment::CropFlip { pad: 1 }, seed))
            .filter(|out| {
                // A flipped row decreases where it is not zero-filled.
                let row: Vec<u8> = out[4..8].iter().copied().filter(|&v| v != 0).collect();
                row.windows(2).all(|w| w[0] > w[1]) && row.len() > 1
            })
            .count();
        assert!((150..250).contains(&flipped), "{flipped} of 400 flipped");
    }

    #[test]
    fn parse_and_print_round_trip() {
        for s in ["none", "shift:2", "crop-flip:4"] {
            assert_eq!(s.parse::<Augment>().unwrap().to_string(), s);
        }
        for bad in ["shift", "shift:0", "crop-flip:17", "rotate:3", "shift:x"] {
            assert!(bad.parse::<Augment>().is_err(), "{bad}");
        }
    }
}
