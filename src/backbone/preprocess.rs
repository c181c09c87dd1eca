//! Images into the backbone's input: bytes / 255, bilinear resizing to `size` x `size`
//! (PyTorch's `interpolate(mode="bilinear", align_corners=False)`, no antialiasing), grey
//! replicated to three channels, ImageNet mean and std; channels last.

use crate::data::ImageSet;

pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Source indices and weights of one output coordinate: (i0, i1, weight of i1).
fn taps(out: usize, input: usize) -> Vec<(usize, usize, f32)> {
    let scale = input as f32 / out as f32;
    (0..out)
        .map(|o| {
            let src = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src as usize).min(input - 1);
            let i1 = (i0 + 1).min(input - 1);
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

/// Images `range` of `images` as `len x size x size x 3` normalised values, channels last.
/// The caller has checked the channel count (1 or 3).
pub fn prepare(images: &ImageSet, range: std::ops::Range<usize>, size: usize) -> Vec<f32> {
    let (c, h, w) = (images.channels, images.height, images.width);
    let ys = taps(size, h);
    let xs = taps(size, w);
    let mut out = vec![0.0f32; range.len() * size * size * 3];
    let mut plane = vec![0.0f32; size * size];
    for (k, i) in range.enumerate() {
        let img = images.image(i);
        let dst = &mut out[k * size * size * 3..(k + 1) * size * size * 3];
        for ch in 0..3 {
            let src = &img[ch.min(c - 1) * h * w..][..h * w];
            let v = |y: usize, x: usize| f32::from(src[y * w + x]) / 255.0;
            for (oy, &(y0, y1, ly)) in ys.iter().enumerate() {
                for (ox, &(x0, x1, lx)) in xs.iter().enumerate() {
                    let top = (1.0 - lx) * v(y0, x0) + lx * v(y0, x1);
                    let bottom = (1.0 - lx) * v(y1, x0) + lx * v(y1, x1);
                    plane[oy * size + ox] = (1.0 - ly) * top + ly * bottom;
                }
            }
            for (p, &value) in plane.iter().enumerate() {
                dst[p * 3 + ch] = (value - MEAN[ch]) / STD[ch];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_by_two_is_pytorchs() {
        // PyTorch: interpolate([[0, 1]], size=4, bilinear, align_corners=False) on one row
        // gives 0, 0.25, 0.75, 1.
        let t = taps(4, 2);
        let row: Vec<f32> = t
            .iter()
            .map(|&(a, b, l)| (1.0 - l) * a as f32 + l * b as f32)
            .collect();
        assert_eq!(row, [0.0, 0.25, 0.75, 1.0]);
        // Same size: the identity.
        assert!(taps(5, 5)
            .iter()
            .enumerate()
            .all(|(i, &(a, _, l))| a == i && l == 0.0));
    }

    #[test]
    fn grey_is_replicated_and_normalised() {
        let images = ImageSet {
            pixels: vec![0, 255, 255, 0],
            labels: vec![0],
            channels: 1,
            height: 2,
            width: 2,
            class_names: vec!["a".into()],
        };
        let x = prepare(&images, 0..1, 2);
        for ch in 0..3 {
            assert!((x[ch] - (0.0 - MEAN[ch]) / STD[ch]).abs() < 1e-6);
            assert!((x[3 + ch] - (1.0 - MEAN[ch]) / STD[ch]).abs() < 1e-6);
        }
    }
}
