//! PyTorch's legacy (non-zip) `torch.save` format, in which the released EfficientNet-Lite
//! weights are stored. candle reads only the zip format, so this reads the legacy one with
//! candle's pickle interpreter: the file is five pickles in a row (magic number, protocol
//! version, system info, the state dict, the list of storage keys) and then, for each key in
//! that order, the storage as an i64 element count followed by its raw little-endian values.
//!
//! Only what a state dict of float tensors needs is accepted: every tensor must be a
//! view of an f32 storage (integer storages such as BatchNorm's `num_batches_tracked` are
//! skipped). Anything else is an error naming the file.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use candle_core::pickle::{Object, Stack};

/// The first pickle of every legacy file: protocol 2, LONG1 of 10 bytes, the magic number
/// 0x1950a86a20f9469cfc6c, STOP. Compared as bytes: candle's LONG1 holds 8 bytes at most.
const MAGIC: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
];

#[derive(Debug, thiserror::Error)]
pub enum PthError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a legacy PyTorch file (the zip format and others are not read here)")]
    NotLegacy { path: PathBuf },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
}

/// One float tensor of a state dict, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct PthTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Where a tensor's values are: its storage and the view into it.
struct TensorRef {
    name: String,
    storage: String,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// What a storage holds, from its persistent id.
struct StorageInfo {
    element_size: usize,
    is_f32: bool,
}

/// Reads every f32 tensor of the state dict in `path`, sorted by name.
pub fn read_state_dict(path: &Path) -> Result<Vec<(String, PthTensor)>, PthError> {
    let format = |message: String| PthError::Format {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|source| PthError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut r = BufReader::new(file);
    let mut magic = [0u8; MAGIC.len()];
    if r.read_exact(&mut magic).is_err() || magic != MAGIC {
        return Err(PthError::NotLegacy {
            path: path.to_path_buf(),
        });
    }
    let pickle = |r: &mut BufReader<std::fs::File>, what: &str| -> Result<Object, PthError> {
        let mut stack = Stack::empty();
        stack
            .read_loop(r)
            .and_then(|_| stack.finalize())
            .map_err(|e| format(format!("reading the {what}: {e}")))
    };
    match pickle(&mut r, "protocol version")? {
        Object::Int(1001) => {}
        other => return Err(format(format!("protocol version {other:?}, expected 1001"))),
    }
    pickle(&mut r, "system info")?;
    let dict = pickle(&mut r, "state dict")?;
    let Object::Dict(entries) = dict else {
        return Err(format("the object saved is not a dict of tensors".into()));
    };
    let mut storages: HashMap<String, StorageInfo> = HashMap::new();
    let mut refs = Vec::new();
    for (key, value) in entries {
        let Object::Unicode(name) = key else { continue };
        if let Some(t) = tensor_ref(name, value, &mut storages).map_err(&format)? {
            refs.push(t);
        }
    }
    let keys = match pickle(&mut r, "storage keys")? {
        Object::List(keys) => keys
            .into_iter()
            .map(|k| match k {
                Object::Unicode(k) => Ok(k),
                other => Err(format(format!("storage key {other:?}"))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        other => return Err(format(format!("storage keys {other:?}"))),
    };
    let mut data: HashMap<String, Vec<f32>> = HashMap::new();
    for key in keys {
        let info = storages
            .get(&key)
            .ok_or_else(|| format(format!("storage {key} is not used by any tensor")))?;
        let mut count = [0u8; 8];
        read_exact(&mut r, &mut count, path)?;
        let count = usize::try_from(i64::from_le_bytes(count))
            .map_err(|_| format(format!("storage {key} has a negative size")))?;
        let bytes = count
            .checked_mul(info.element_size)
            .filter(|&b| b <= 1 << 32)
            .ok_or_else(|| format(format!("storage {key} claims {count} values")))?;
        let mut raw = vec![0u8; bytes];
        read_exact(&mut r, &mut raw, path)?;
        if info.is_f32 {
            let values = raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            data.insert(key, values);
        }
    }
    if !r.fill_buf().map_or(true, |rest| rest.is_empty()) {
        return Err(format("bytes after the last storage".into()));
    }
    refs.sort_by(|a, b| a.name.cmp(&b.name));
    refs.into_iter()
        .map(|t| {
            let storage = data
                .get(&t.storage)
                .ok_or_else(|| format(format!("{}: its storage is missing", t.name)))?;
            let values = gather_view(storage, t.offset, &t.shape, &t.stride)
                .ok_or_else(|| format(format!("{}: reaches past its storage", t.name)))?;
            Ok((
                t.name,
                PthTensor {
                    shape: t.shape,
                    values,
                },
            ))
        })
        .collect()
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<(), PthError> {
    r.read_exact(buf).map_err(|source| PthError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` of one dict value;
/// `None` for values that are not tensors of float storages.
fn tensor_ref(
    name: String,
    value: Object,
    storages: &mut HashMap<String, StorageInfo>,
) -> Result<Option<TensorRef>, String> {
    let Object::Reduce { callable, args } = value else {
        return Ok(None);
    };
    match *callable {
        Object::Class {
            module_name,
            class_name,
        } if module_name == "torch._utils" && class_name == "_rebuild_tensor_v2" => {}
        _ => return Ok(None),
    }
    let Object::Tuple(args) = *args else {
        return Err(format!("{name}: tensor arguments are not a tuple"));
    };
    let [storage, offset, shape, stride, ..] = &args[..] else {
        return Err(format!("{name}: {} tensor arguments", args.len()));
    };
    // Persistent id: ("storage", storage type, key, location, size, view metadata).
    let Object::PersistentLoad(id) = storage else {
        return Err(format!("{name}: storage is not a persistent id"));
    };
    let Object::Tuple(id) = id.as_ref() else {
        return Err(format!("{name}: storage id is not a tuple"));
    };
    let (Some(Object::Class { class_name, .. }), Some(Object::Unicode(key))) =
        (id.get(1), id.get(2))
    else {
        return Err(format!("{name}: storage id {id:?}"));
    };
    let (element_size, is_f32) = match class_name.as_str() {
        "FloatStorage" => (4, true),
        "LongStorage" | "DoubleStorage" => (8, false),
        "IntStorage" => (4, false),
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => (2, false),
        "ByteStorage" | "CharStorage" | "BoolStorage" => (1, false),
        other => return Err(format!("{name}: unknown storage type {other}")),
    };
    storages.insert(
        key.clone(),
        StorageInfo {
            element_size,
            is_f32,
        },
    );
    if !is_f32 {
        return Ok(None);
    }
    Ok(Some(TensorRef {
        name: name.clone(),
        storage: key.clone(),
        offset: usize_of(offset).ok_or_else(|| format!("{name}: offset {offset:?}"))?,
        shape: usizes(shape).ok_or_else(|| format!("{name}: shape {shape:?}"))?,
        stride: usizes(stride).ok_or_else(|| format!("{name}: stride {stride:?}"))?,
    }))
}

fn usize_of(o: &Object) -> Option<usize> {
    match o {
        Object::Int(v) => usize::try_from(*v).ok(),
        Object::Long(v) => usize::try_from(*v).ok(),
        _ => None,
    }
}

fn usizes(o: &Object) -> Option<Vec<usize>> {
    match o {
        Object::Tuple(v) => v.iter().map(usize_of).collect(),
        _ => None,
    }
}

/// The values of a view (any strides) in row-major order, or `None` if it reaches past the
/// storage.
fn gather_view(
    storage: &[f32],
    offset: usize,
    shape: &[usize],
    stride: &[usize],
) -> Option<Vec<f32>> {
    if shape.len() != stride.len() {
        return None;
    }
    let count: usize = shape.iter().product();
    if count == 0 {
        return Some(Vec::new());
    }
    let last = offset
        + shape
            .iter()
            .zip(stride)
            .map(|(&n, &s)| (n - 1) * s)
            .sum::<usize>();
    if last >= storage.len() {
        return None;
    }
    let mut index = vec![0usize; shape.len()];
    let mut values = Vec::with_capacity(count);
    for _ in 0..count {
        let at = offset
            + index
                .iter()
                .zip(stride)
                .map(|(&i, &s)| i * s)
                .sum::<usize>();
        values.push(storage[at]);
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tests/fixtures/legacy_small.pth (tests/reference/pth_reference.py): `torch.save` in
    /// the legacy format of two tensors, an integer and a view into the first's storage.
    #[test]
    fn reads_a_small_legacy_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy_small.pth");
        let dict = read_state_dict(&path).unwrap();
        let names: Vec<&str> = dict.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a.weight", "b", "view"]);
        assert_eq!(dict[0].1.shape, [2, 3]);
        assert_eq!(dict[0].1.values, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(dict[1].1.values, [-1.5]);
        // A row of a larger storage: offset 3.
        assert_eq!(dict[2].1.shape, [3]);
        assert_eq!(dict[2].1.values, [3.0, 4.0, 5.0]);
    }

    #[test]
    fn other_files_are_refused_with_their_name() {
        let dir = std::env::temp_dir().join(format!("eidn-pth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let zip = dir.join("new.pth");
        std::fs::write(&zip, b"PK\x03\x04 not legacy").unwrap();
        let e = read_state_dict(&zip).unwrap_err();
        assert!(matches!(e, PthError::NotLegacy { .. }), "{e}");
        assert!(e.to_string().contains("new.pth"), "{e}");
        let small = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy_small.pth");
        let bytes = std::fs::read(small).unwrap();
        let cut = dir.join("cut.pth");
        std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
        let e = read_state_dict(&cut).unwrap_err();
        assert!(e.to_string().contains("cut.pth"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn views_are_gathered_in_row_major_order() {
        let s: Vec<f32> = (0..6).map(|v| v as f32).collect();
        assert_eq!(gather_view(&s, 0, &[2, 3], &[3, 1]).unwrap(), s);
        // The transpose.
        assert_eq!(
            gather_view(&s, 0, &[3, 2], &[1, 3]).unwrap(),
            [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
        );
        assert!(gather_view(&s, 4, &[3], &[1]).is_none());
    }
}
