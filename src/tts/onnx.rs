//! Reads an ONNX model file as a container of named weights, not as a program to run: the
//! voice network is written out in Candle (`tts::vits`), and all it needs from the file is
//! each weight under its PyTorch module path plus the attributes of the graph's convolutions
//! (padding, dilation, stride, groups), which the weights' shapes do not tell.
//!
//! The protobuf messages below are the small subset of the public `onnx.proto` that this
//! needs, declared by hand with `prost` (field numbers from that file), so no protoc and no
//! build script. Unknown fields are skipped by the decoder.
//!
//! Exporters rename some weights: folded weight-norm convolutions become `onnx::Conv_8168`,
//! and an embedding may carry an unrelated name. Each weight that feeds a `Conv`,
//! `ConvTranspose` or `Gather` node is therefore also filed under the module path that the
//! node's name carries: input 1 of `/dec/ups.0/ConvTranspose` is `dec.ups.0.weight`, input 2
//! is `dec.ups.0.bias`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use prost::Message;

/// The parts of `ModelProto` that hold weights.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    pub name: String,
    /// A slice of the memory-mapped file when read by `OnnxWeights::read`: not copied.
    #[prost(bytes = "bytes", tag = "9")]
    pub raw_data: bytes::Bytes,
    #[prost(int32, tag = "14")]
    pub data_location: i32,
}

/// `TensorProto.DataType` values this reader converts.
const DT_FLOAT: i32 = 1;
const DT_INT32: i32 = 6;
const DT_INT64: i32 = 7;
const DT_FLOAT16: i32 = 10;
/// `TensorProto.DataLocation.EXTERNAL`: the bytes live in a side file.
const LOCATION_EXTERNAL: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{} is not a readable ONNX model (truncated or corrupt?): {source}", path.display())]
    Decode { path: PathBuf, source: prost::DecodeError },
    #[error("{} has no graph: not an ONNX model, or a corrupt one", path.display())]
    NoGraph { path: PathBuf },
    #[error("{} holds no weights: not a voice model, or a corrupt one", path.display())]
    NoWeights { path: PathBuf },
    #[error("{}: tensor {name:?} {problem}", path.display())]
    BadTensor { path: PathBuf, name: String, problem: String },
    #[error("{}: the graph has no tensor {name:?}{}", path.display(), unmapped_note(unmapped))]
    Missing { path: PathBuf, name: String, unmapped: Vec<String> },
    #[error("{}: tensor {name:?} has shape {actual:?}, expected {expected:?}", path.display())]
    Shape { path: PathBuf, name: String, expected: Vec<usize>, actual: Vec<usize> },
    #[error("{}: no convolution node for module {module:?} (its padding and dilation come from that node)", path.display())]
    NoConvNode { path: PathBuf, module: String },
    #[error("{}: convolution {module:?} has asymmetric padding {pads:?}", path.display())]
    AsymmetricPadding { path: PathBuf, module: String, pads: Vec<i64> },
    #[error("loading tensor {name:?}: {source}")]
    Candle { name: String, source: candle_core::Error },
}

fn unmapped_note(unmapped: &[String]) -> String {
    if unmapped.is_empty() {
        String::new()
    } else {
        format!(" (anonymous weights that could not be mapped to a module: {})", unmapped.join(", "))
    }
}

/// The values of one tensor, converted to the two types the network uses.
#[derive(Debug, Clone)]
enum Values {
    /// On the CPU, built from the converted values without another copy; `tensor` hands out
    /// clones that share it.
    F32(Tensor),
    I64(Vec<i64>),
    /// A tensor this reader does not convert (type, or data outside the file): kept so that
    /// asking for it says why instead of saying it is missing.
    Unsupported(String),
}

#[derive(Debug, Clone)]
struct RawTensor {
    dims: Vec<usize>,
    values: Values,
}

/// Attributes of a graph convolution, read from its node: they are part of the architecture
/// (a dilation cannot be seen in a weight's shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvAttrs {
    pub padding: usize,
    pub dilation: usize,
    pub stride: usize,
    pub groups: usize,
}

/// The weights of an ONNX graph by name, plus the convolutions' attributes by module path.
#[derive(Debug)]
pub struct OnnxWeights {
    path: PathBuf,
    tensors: Vec<RawTensor>,
    by_name: HashMap<String, usize>,
    convs: HashMap<String, Result<ConvAttrs, Vec<i64>>>,
    unmapped: Vec<String>,
}

impl OnnxWeights {
    /// Reads `path`. Errors name the file; a truncated or corrupt one fails here.
    ///
    /// The file is memory-mapped and the weights' bytes are decoded where they lie, so the
    /// only new memory is the converted values. Reading it into a buffer and letting the
    /// decoder copy each weight out of it tripled the fresh memory the kernel had to fault in
    /// and zero, which made the load take 0.1 to 0.7 s on the same machine.
    pub fn read(path: &Path) -> Result<Self, OnnxError> {
        let io = |source| OnnxError::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read while this function runs and dropped before it returns
        // (the weights are converted into owned tensors). Model files are replaced by
        // rename, never rewritten in place, so the mapped file does not change under it.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::from_bytes(bytes::Bytes::from_owner(map), path)
    }

    /// Parses a model already in memory (a `Bytes` is sliced, not copied); `path` only names
    /// it in errors.
    pub fn from_bytes(bytes: impl bytes::Buf, path: &Path) -> Result<Self, OnnxError> {
        let path = path.to_path_buf();
        let model = ModelProto::decode(bytes).map_err(|source| OnnxError::Decode { path: path.clone(), source })?;
        let graph = model.graph.ok_or_else(|| OnnxError::NoGraph { path: path.clone() })?;
        let mut weights = OnnxWeights {
            path,
            tensors: Vec::new(),
            by_name: HashMap::new(),
            convs: HashMap::new(),
            unmapped: Vec::new(),
        };
        for t in &graph.initializer {
            weights.insert(t.name.clone(), t)?;
        }
        // Constants the exporter left as nodes instead of initializers.
        for node in graph.node.iter().filter(|n| n.op_type == "Constant") {
            if let (Some(out), Some(t)) =
                (node.output.first(), node.attribute.iter().find(|a| a.name == "value").and_then(|a| a.t.as_ref()))
            {
                weights.insert(out.clone(), t)?;
            }
        }
        if weights.tensors.is_empty() {
            return Err(OnnxError::NoWeights { path: weights.path });
        }
        weights.map_module_paths(&graph.node);
        Ok(weights)
    }

    fn insert(&mut self, name: String, t: &TensorProto) -> Result<(), OnnxError> {
        let raw = convert(t).map_err(|problem| OnnxError::BadTensor {
            path: self.path.clone(),
            name: name.clone(),
            problem,
        })?;
        self.by_name.insert(name, self.tensors.len());
        self.tensors.push(raw);
        Ok(())
    }

    /// Files weights under the module path of the node that consumes them, and records the
    /// convolutions' attributes under the same path.
    fn map_module_paths(&mut self, nodes: &[NodeProto]) {
        for node in nodes {
            // Any anonymous initializer can also be found as input `pos` of the node that
            // reads it (`/dp/flows.0/Exp#0`): exporters fold constant expressions to
            // different depths, and the node is what stays put.
            for (pos, input) in node.input.iter().enumerate() {
                if input.starts_with("onnx::") && !node.name.is_empty() {
                    if let Some(&index) = self.by_name.get(input) {
                        self.by_name.entry(format!("{}#{pos}", node.name)).or_insert(index);
                    }
                }
            }
            let positions: &[(usize, &str)] = match node.op_type.as_str() {
                "Conv" | "ConvTranspose" => &[(1, "weight"), (2, "bias")],
                "Gather" => &[(0, "weight")],
                _ => continue,
            };
            let module = module_path(&node.name);
            if let Some(module) = &module {
                if matches!(node.op_type.as_str(), "Conv" | "ConvTranspose") {
                    self.convs.entry(module.clone()).or_insert_with(|| conv_attrs(node));
                }
            }
            for &(pos, suffix) in positions {
                let Some(input) = node.input.get(pos).filter(|i| !i.is_empty()) else { continue };
                let Some(&index) = self.by_name.get(input) else { continue };
                match &module {
                    Some(module) => {
                        self.by_name.entry(format!("{module}.{suffix}")).or_insert(index);
                    }
                    None if input.starts_with("onnx::") => {
                        self.unmapped.push(format!("{input} (input {pos} of node {:?})", node.name))
                    }
                    None => {}
                }
            }
        }
    }

    /// The file these weights came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The shape of tensor `name`, if the graph has it.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.by_name.get(name).map(|&i| self.tensors[i].dims.as_slice())
    }

    /// The shape of tensor `name`, or the error that names it as missing.
    pub fn require_shape(&self, name: &str) -> Result<&[usize], OnnxError> {
        Ok(self.raw(name)?.dims.as_slice())
    }

    /// Tensor `name` as f32 on `device`.
    pub fn tensor(&self, name: &str, device: &Device) -> Result<Tensor, OnnxError> {
        let raw = self.raw(name)?;
        let result = match &raw.values {
            Values::F32(t) => t.to_device(device),
            Values::I64(v) => {
                Tensor::from_slice(v, raw.dims.as_slice(), device).and_then(|t| t.to_dtype(candle_core::DType::F32))
            }
            Values::Unsupported(why) => {
                return Err(OnnxError::BadTensor {
                    path: self.path.clone(),
                    name: name.to_string(),
                    problem: why.clone(),
                })
            }
        };
        result.map_err(|source| OnnxError::Candle { name: name.to_string(), source })
    }

    /// Tensor `name`, which must have shape `expected`.
    pub fn tensor_shaped(&self, name: &str, expected: &[usize], device: &Device) -> Result<Tensor, OnnxError> {
        let actual = &self.raw(name)?.dims;
        if actual.as_slice() != expected {
            return Err(OnnxError::Shape {
                path: self.path.clone(),
                name: name.to_string(),
                expected: expected.to_vec(),
                actual: actual.clone(),
            });
        }
        self.tensor(name, device)
    }

    /// The attributes of the convolution node of `module` (e.g. `dec.ups.0`).
    pub fn conv_attrs(&self, module: &str) -> Result<ConvAttrs, OnnxError> {
        match self.convs.get(module) {
            Some(Ok(attrs)) => Ok(*attrs),
            Some(Err(pads)) => Err(OnnxError::AsymmetricPadding {
                path: self.path.clone(),
                module: module.to_string(),
                pads: pads.clone(),
            }),
            None => Err(OnnxError::NoConvNode { path: self.path.clone(), module: module.to_string() }),
        }
    }

    fn raw(&self, name: &str) -> Result<&RawTensor, OnnxError> {
        self.by_name.get(name).map(|&i| &self.tensors[i]).ok_or_else(|| OnnxError::Missing {
            path: self.path.clone(),
            name: name.to_string(),
            unmapped: self.unmapped.clone(),
        })
    }
}

/// `/dec/ups.0/ConvTranspose` -> `dec.ups.0`: the node's scope is the module that owns it;
/// the last component names the operation. Nodes outside any module have no path.
fn module_path(node_name: &str) -> Option<String> {
    let scope = node_name.strip_prefix('/')?;
    let (module, _op) = scope.rsplit_once('/')?;
    if module.is_empty() || module.split('/').any(str::is_empty) {
        return None;
    }
    Some(module.replace('/', "."))
}

/// Convolution attributes with ONNX's defaults; `Err(pads)` for padding that differs per
/// side, which the network code does not implement.
fn conv_attrs(node: &NodeProto) -> Result<ConvAttrs, Vec<i64>> {
    let ints = |name: &str| node.attribute.iter().find(|a| a.name == name).map(|a| a.ints.clone());
    let int = |name: &str| node.attribute.iter().find(|a| a.name == name).map(|a| a.i);
    let first = |v: Option<Vec<i64>>| v.and_then(|v| v.first().copied()).unwrap_or(1).max(1) as usize;
    let pads = ints("pads").unwrap_or_default();
    let padding = match pads.as_slice() {
        [] => 0,
        [a, b] if a == b && *a >= 0 => *a as usize,
        _ => return Err(pads),
    };
    Ok(ConvAttrs {
        padding,
        dilation: first(ints("dilations")),
        stride: first(ints("strides")),
        groups: int("group").unwrap_or(1).max(1) as usize,
    })
}

/// The values of `t` with their element count checked against its shape.
fn convert(t: &TensorProto) -> Result<RawTensor, String> {
    if t.dims.iter().any(|&d| d < 0) {
        return Err(format!("has a negative dimension {:?}", t.dims));
    }
    let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let count: usize = dims.iter().product();
    if t.data_location == LOCATION_EXTERNAL {
        let why = "keeps its data in an external file, which wick does not read".to_string();
        return Ok(RawTensor { dims, values: Values::Unsupported(why) });
    }
    let raw = &t.raw_data[..];
    let f32s = match t.data_type {
        DT_FLOAT if !raw.is_empty() => Some(le_chunks::<4, _>(raw, count, f32::from_le_bytes)?),
        DT_FLOAT => Some(t.float_data.clone()),
        DT_FLOAT16 if !raw.is_empty() => Some(le_chunks::<2, _>(raw, count, |b| half::f16::from_le_bytes(b).to_f32())?),
        // float16 values without raw bytes sit in int32_data, one per element.
        DT_FLOAT16 => Some(t.int32_data.iter().map(|&b| half::f16::from_bits(b as u16).to_f32()).collect()),
        _ => None,
    };
    if let Some(v) = f32s {
        if v.len() != count {
            return Err(format!("holds {} values but its shape {dims:?} needs {count}", v.len()));
        }
        let tensor = Tensor::from_vec(v, dims.as_slice(), &Device::Cpu).map_err(|e| e.to_string())?;
        return Ok(RawTensor { dims, values: Values::F32(tensor) });
    }
    let values = match t.data_type {
        DT_INT64 if !raw.is_empty() => Values::I64(le_chunks::<8, _>(raw, count, i64::from_le_bytes)?),
        DT_INT64 => Values::I64(t.int64_data.clone()),
        DT_INT32 if !raw.is_empty() => {
            Values::I64(le_chunks::<4, _>(raw, count, |b| i64::from(i32::from_le_bytes(b)))?)
        }
        DT_INT32 => Values::I64(t.int32_data.iter().map(|&v| i64::from(v)).collect()),
        other => Values::Unsupported(format!("has ONNX data type {other}, which wick does not convert")),
    };
    let len = match &values {
        Values::F32(t) => t.elem_count(),
        Values::I64(v) => v.len(),
        Values::Unsupported(_) => count,
    };
    if len != count {
        return Err(format!("holds {len} values but its shape {dims:?} needs {count}"));
    }
    Ok(RawTensor { dims, values })
}

fn le_chunks<const N: usize, T>(raw: &[u8], count: usize, f: impl Fn([u8; N]) -> T) -> Result<Vec<T>, String> {
    if raw.len() != count * N {
        return Err(format!("holds {} bytes but its shape needs {}", raw.len(), count * N));
    }
    Ok(raw.chunks_exact(N).map(|c| f(c.try_into().expect("chunks_exact yields N bytes"))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
        TensorProto {
            dims: dims.to_vec(),
            data_type: DT_FLOAT,
            name: name.to_string(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into(),
            ..Default::default()
        }
    }

    fn node(name: &str, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![format!("{name}_output_0")],
            name: name.to_string(),
            op_type: op.to_string(),
            attribute: attrs,
        }
    }

    fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto { name: name.to_string(), ints: v.to_vec(), ..Default::default() }
    }

    fn encode(graph: GraphProto) -> bytes::Bytes {
        ModelProto { graph: Some(graph) }.encode_to_vec().into()
    }

    #[test]
    fn anonymous_weights_take_the_path_of_the_node_that_consumes_them() {
        let graph = GraphProto {
            initializer: vec![
                f32_tensor("onnx::Conv_1", &[2, 1, 3], &[1., 2., 3., 4., 5., 6.]),
                f32_tensor("flow.flows.0.enc.in_layers.0.bias", &[2], &[0.5, -0.5]),
                f32_tensor("sid", &[4, 2], &[0.; 8]),
            ],
            node: vec![
                node(
                    "/flow/flows.0/enc/in_layers.0/Conv",
                    "Conv",
                    &["x", "onnx::Conv_1", "flow.flows.0.enc.in_layers.0.bias"],
                    vec![ints("dilations", &[2]), ints("pads", &[2, 2]), ints("kernel_shape", &[3])],
                ),
                node("/enc_p/emb/Gather", "Gather", &["sid", "input"], vec![]),
            ],
        };
        let w = OnnxWeights::from_bytes(encode(graph), Path::new("test.onnx")).unwrap();
        let dev = Device::Cpu;
        let weight = w.tensor_shaped("flow.flows.0.enc.in_layers.0.weight", &[2, 1, 3], &dev).unwrap();
        assert_eq!(weight.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [1., 2., 3., 4., 5., 6.]);
        assert!(w.contains("flow.flows.0.enc.in_layers.0.bias"));
        assert_eq!(w.shape("enc_p.emb.weight"), Some(&[4usize, 2][..]));
        let attrs = w.conv_attrs("flow.flows.0.enc.in_layers.0").unwrap();
        assert_eq!(attrs, ConvAttrs { padding: 2, dilation: 2, stride: 1, groups: 1 });
    }

    #[test]
    fn an_unmappable_weight_is_named_when_asked_for() {
        let graph = GraphProto {
            initializer: vec![f32_tensor("onnx::Conv_9", &[1, 1, 1], &[1.])],
            node: vec![node("Conv_17", "Conv", &["x", "onnx::Conv_9"], vec![])],
        };
        let w = OnnxWeights::from_bytes(encode(graph), Path::new("odd.onnx")).unwrap();
        let err = w.tensor("dec.conv_pre.weight", &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("odd.onnx") && err.contains("dec.conv_pre.weight"), "{err}");
        assert!(err.contains("onnx::Conv_9"), "{err}");
    }

    #[test]
    fn a_tensor_whose_bytes_do_not_fit_its_shape_is_refused() {
        let mut t = f32_tensor("w", &[3], &[1., 2., 3.]);
        t.raw_data.truncate(8);
        let err =
            OnnxWeights::from_bytes(encode(GraphProto { initializer: vec![t], node: vec![] }), Path::new("m.onnx"))
                .unwrap_err()
                .to_string();
        assert!(err.contains("m.onnx") && err.contains("\"w\""), "{err}");
    }

    #[test]
    fn module_paths_come_from_node_scopes() {
        assert_eq!(module_path("/dec/ups.0/ConvTranspose").as_deref(), Some("dec.ups.0"));
        assert_eq!(module_path("/enc_p/emb/Gather").as_deref(), Some("enc_p.emb"));
        assert_eq!(module_path("/Gather_1"), None);
        assert_eq!(module_path("Conv_17"), None);
    }
}
