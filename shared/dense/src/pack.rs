//! Packing a layer's weights once, at load, into column panels of [`PANEL`] floats stored row
//! after row of the input dimension: the layout the kernels read.

use crate::{Activation, PANEL, PARALLEL_MIN_MACS, SharedOut, team};

/// One layer: `y = activation(x · Wᵀ + b)`, weights packed into panels.
pub(crate) struct PackedLayer {
    pub(crate) in_features: usize,
    pub(crate) out_features: usize,
    /// `panels × in_features × PANEL` floats starting at `offset`, 64-byte aligned; columns past
    /// `out_features` are zero.
    storage: Vec<f32>,
    offset: usize,
    /// `panels × PANEL` floats, zero past `out_features`.
    pub(crate) bias: Vec<f32>,
    pub(crate) activation: Activation,
}

impl PackedLayer {
    pub(crate) fn panels(&self) -> usize {
        self.out_features.div_ceil(PANEL)
    }

    pub(crate) fn panel(&self, index: usize) -> *const f32 {
        self.storage[self.offset + index * self.in_features * PANEL..].as_ptr()
    }
}

/// Weights of one layer as the caller holds them.
pub struct LayerWeights<'a> {
    /// Row-major weights.
    pub weights: Weights<'a>,
    /// `true`: `[out_features, in_features]` (PyTorch, ONNX `Gemm` with `transB=1`);
    /// `false`: `[in_features, out_features]` (ONNX `MatMul`, `Gemm` with `transB=0`).
    pub out_major: bool,
    /// Inputs per row.
    pub in_features: usize,
    /// Outputs per row.
    pub out_features: usize,
    /// `out_features` values added to every row, if the layer has a bias.
    pub bias: Option<&'a [f32]>,
    /// Applied after the bias.
    pub activation: Activation,
}

/// A layer's weights: floats, or the little-endian bytes of floats as files store them (packed
/// straight from the file, without a copy in between).
#[derive(Debug, Clone, Copy)]
pub enum Weights<'a> {
    /// Floats.
    F32(&'a [f32]),
    /// 4 little-endian bytes per float.
    LeBytes(&'a [u8]),
}

impl Weights<'_> {
    /// How many floats.
    pub fn len(&self) -> usize {
        match self {
            Weights::F32(v) => v.len(),
            Weights::LeBytes(b) => b.len() / 4,
        }
    }

    /// True if there are none (or the bytes aren't whole floats).
    pub fn is_empty(&self) -> bool {
        self.len() == 0 || matches!(self, Weights::LeBytes(b) if b.len() % 4 != 0)
    }

    /// Copies floats `start..start + out.len()` into `out`.
    pub fn read(&self, start: usize, out: &mut [f32]) {
        match self {
            Weights::F32(v) => out.copy_from_slice(&v[start..start + out.len()]),
            Weights::LeBytes(b) => {
                let bytes = &b[start * 4..(start + out.len()) * 4];
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
        }
    }
}

/// Packs a layer's weights into panels and pads its bias.
pub(crate) fn pack(layer: &LayerWeights<'_>, threads: usize) -> PackedLayer {
    let (k, n) = (layer.in_features, layer.out_features);
    let panels = n.div_ceil(PANEL);
    let len = panels * k * PANEL;
    // 16 spare floats let the panels start on a 64-byte boundary.
    let mut storage = vec![0.0f32; len + 16];
    let offset = storage.as_ptr().align_offset(64).min(16);
    // Training packs its weights for every product: large ones are packed by every thread.
    let parts = if threads > 1 && k * n >= PARALLEL_MIN_MACS / 4 {
        threads.min(panels)
    } else {
        1
    };
    let blocks = SharedOut(storage[offset..offset + len].as_mut_ptr());
    team::run_parts(parts, threads, &|part| {
        for panel in panels * part / parts..panels * (part + 1) / parts {
            // SAFETY: parts pack disjoint panels, each `k × PANEL` floats of `storage`, which
            // outlives the call.
            let block =
                unsafe { std::slice::from_raw_parts_mut(blocks.at(panel * k * PANEL), k * PANEL) };
            pack_panel(layer, panel, block);
        }
    });
    let mut bias = vec![0.0f32; panels * PANEL];
    if let Some(b) = layer.bias {
        bias[..n].copy_from_slice(b);
    }
    PackedLayer {
        in_features: k,
        out_features: n,
        storage,
        offset,
        bias,
        activation: layer.activation,
    }
}

/// Packs panel `panel` of a layer's weights into `block` (`in_features × PANEL` floats).
fn pack_panel(layer: &LayerWeights<'_>, panel: usize, block: &mut [f32]) {
    let (k, n) = (layer.in_features, layer.out_features);
    let first = panel * PANEL;
    let cols = PANEL.min(n - first);
    if layer.out_major {
        // Each output's weights are one contiguous run of `k`: read it once, scatter it down
        // its column of the panel.
        let mut run = vec![0.0f32; k];
        for col in 0..cols {
            layer.weights.read((first + col) * k, &mut run);
            for (row, &w) in block.chunks_exact_mut(PANEL).zip(&run) {
                row[col] = w;
            }
        }
    } else {
        // Each input's weights are a row of `n`: copy this panel's slice of it.
        for (p, row) in block.chunks_exact_mut(PANEL).enumerate() {
            layer.weights.read(p * n + first, &mut row[..cols]);
        }
    }
}
