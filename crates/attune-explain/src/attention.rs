//! Raw attention, attention rollout and attention flow.
use petgraph::graph::{DiGraph, NodeIndex};
use rayon::prelude::*;

use crate::ExplainError;

/// A square matrix stored row-major: `get(i, j)` is the attention of query `i` to key `j`.
#[derive(Debug, Clone, PartialEq)]
pub struct Square {
    n: usize,
    data: Vec<f64>,
}

impl Square {
    /// Wraps `n × n` row-major values.
    pub fn new(n: usize, data: Vec<f64>) -> Result<Self, ExplainError> {
        if data.len() != n * n {
            return Err(ExplainError::LengthMismatch {
                what: "matrix values",
                got: data.len(),
                expected: n * n,
            });
        }
        Ok(Self { n, data })
    }

    /// The identity matrix.
    pub fn identity(n: usize) -> Self {
        let mut data = vec![0.0; n * n];
        for i in 0..n {
            data[i * n + i] = 1.0;
        }
        Self { n, data }
    }

    /// Side length.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Entry `(i, j)`.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.n + j]
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.n..(i + 1) * self.n]
    }

    /// `self · rhs`.
    pub fn matmul(&self, rhs: &Square) -> Result<Square, ExplainError> {
        if rhs.n != self.n {
            return Err(ExplainError::LengthMismatch {
                what: "matrix side",
                got: rhs.n,
                expected: self.n,
            });
        }
        let n = self.n;
        let mut out = vec![0.0; n * n];
        for i in 0..n {
            for k in 0..n {
                let a = self.data[i * n + k];
                if a == 0.0 {
                    continue;
                }
                for j in 0..n {
                    out[i * n + j] += a * rhs.data[k * n + j];
                }
            }
        }
        Ok(Square { n, data: out })
    }
}

/// Attention of one layer for one text: `heads` matrices of `n × n`, flattened as the encoder
/// returns them (`[heads, seq, seq]`, row-major), cut to the text's real tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerAttention {
    /// Number of heads.
    pub heads: usize,
    /// Tokens (rows and columns).
    pub n: usize,
    /// `heads · n · n` probabilities.
    pub values: Vec<f32>,
}

impl LayerAttention {
    /// Checks the sizes.
    pub fn new(heads: usize, n: usize, values: Vec<f32>) -> Result<Self, ExplainError> {
        if values.len() != heads * n * n {
            return Err(ExplainError::LengthMismatch {
                what: "attention values",
                got: values.len(),
                expected: heads * n * n,
            });
        }
        if heads == 0 || n == 0 {
            return Err(ExplainError::Empty("attention with no heads or no tokens"));
        }
        Ok(Self { heads, n, values })
    }

    /// One head's matrix, or the mean over heads when `head` is `None`.
    pub fn matrix(&self, head: Option<usize>) -> Result<Square, ExplainError> {
        let nn = self.n * self.n;
        match head {
            Some(h) if h >= self.heads => Err(ExplainError::OutOfRange {
                what: "head",
                index: h,
                count: self.heads,
            }),
            Some(h) => Square::new(
                self.n,
                self.values[h * nn..(h + 1) * nn]
                    .iter()
                    .map(|&v| v as f64)
                    .collect(),
            ),
            None => {
                let mut data = vec![0.0; nn];
                for h in 0..self.heads {
                    for (d, &v) in data.iter_mut().zip(&self.values[h * nn..(h + 1) * nn]) {
                        *d += v as f64;
                    }
                }
                let inv = 1.0 / self.heads as f64;
                data.iter_mut().for_each(|d| *d *= inv);
                Square::new(self.n, data)
            }
        }
    }
}

fn layer_at(layers: &[LayerAttention], layer: usize) -> Result<&LayerAttention, ExplainError> {
    layers.get(layer).ok_or(ExplainError::OutOfRange {
        what: "layer",
        index: layer,
        count: layers.len(),
    })
}

/// Raw attention importance: row `query` (the `[CLS]` position, 0, for classification) of one
/// layer's attention, for one head or averaged over heads.
pub fn raw_attention(
    layers: &[LayerAttention],
    layer: usize,
    head: Option<usize>,
    query: usize,
) -> Result<Vec<f64>, ExplainError> {
    let l = layer_at(layers, layer)?;
    if query >= l.n {
        return Err(ExplainError::OutOfRange {
            what: "query token",
            index: query,
            count: l.n,
        });
    }
    Ok(l.matrix(head)?.row(query).to_vec())
}

/// Attention each token *receives* in one layer, summed over the query rows in `queries`
/// (Hollenstein & Beinborn 2021's "attention" importance: last layer, head mean, the rows of
/// `[CLS]` and `[SEP]` left out, columns summed). Unlike the `[CLS]` row this does not depend on
/// what the classifier reads, which suits a pretrained model without a task.
pub fn received_attention(
    layers: &[LayerAttention],
    layer: usize,
    head: Option<usize>,
    queries: std::ops::Range<usize>,
) -> Result<Vec<f64>, ExplainError> {
    let l = layer_at(layers, layer)?;
    if queries.end > l.n {
        return Err(ExplainError::OutOfRange {
            what: "query token",
            index: queries.end - 1,
            count: l.n,
        });
    }
    let m = l.matrix(head)?;
    let mut out = vec![0.0; l.n];
    for q in queries {
        for (o, v) in out.iter_mut().zip(m.row(q)) {
            *o += v;
        }
    }
    Ok(out)
}

/// Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers", ACL):
/// per layer `A_l` = attention averaged over heads; `Â_l = 0.5·A_l + 0.5·I` with rows
/// renormalised (the residual connection carries half of each token's information);
/// `R = Â_L · … · Â_1`. Returns `R`; row `[CLS]` gives each input token's importance.
pub fn rollout(layers: &[LayerAttention]) -> Result<Square, ExplainError> {
    let first = layers.first().ok_or(ExplainError::Empty("no layers"))?;
    let n = first.n;
    let mut acc = Square::identity(n);
    for layer in layers {
        if layer.n != n {
            return Err(ExplainError::LengthMismatch {
                what: "layer tokens",
                got: layer.n,
                expected: n,
            });
        }
        // Later layers multiply from the left: R_l = Â_l · R_{l-1}.
        acc = residual_adjusted(layer)?.matmul(&acc)?;
    }
    Ok(acc)
}

/// `Â = 0.5·A + 0.5·I` with rows renormalised, `A` the head mean: the residual connection
/// carries half of each token's information past the attention (Abnar & Zuidema 2020, §3).
fn residual_adjusted(layer: &LayerAttention) -> Result<Square, ExplainError> {
    let n = layer.n;
    let a = layer.matrix(None)?;
    let mut data = Vec::with_capacity(n * n);
    for i in 0..n {
        let row: Vec<f64> = (0..n)
            .map(|j| 0.5 * a.get(i, j) + if i == j { 0.5 } else { 0.0 })
            .collect();
        let sum: f64 = row.iter().sum();
        data.extend(row.into_iter().map(|v| v / sum));
    }
    Square::new(n, data)
}

/// Capacities become integers so that max-flow arithmetic is exact and terminates whatever
/// the rounding: a resolution of 2⁻³² ≈ 2.3e-10 is far below any attention weight that matters.
const FLOW_SCALE: f64 = 4_294_967_296.0;

/// Attention flow (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers", ACL, §4):
/// the layers form a DAG with nodes `(layer, token)` for layers `0..=L` (0 = the embeddings);
/// token `i` of layer `l` receives an edge from token `j` of layer `l−1` with capacity
/// `Â_l[i, j]` (residual-adjusted as in [`rollout`]). The importance of input token `j` is the
/// maximum flow from node `(0, j)` to node `(L, query)`.
///
/// Max-flow is petgraph's Dinic implementation on integer capacities (resolution 2⁻³²);
/// the `n` problems share one graph and run in parallel. Last-layer nodes other than `query`
/// cannot reach the sink and are left out.
pub fn attention_flow(layers: &[LayerAttention], query: usize) -> Result<Vec<f64>, ExplainError> {
    let first = layers.first().ok_or(ExplainError::Empty("no layers"))?;
    let n = first.n;
    if query >= n {
        return Err(ExplainError::OutOfRange {
            what: "query token",
            index: query,
            count: n,
        });
    }
    let adjusted = layers
        .iter()
        .map(|layer| {
            if layer.n != n {
                return Err(ExplainError::LengthMismatch {
                    what: "layer tokens",
                    got: layer.n,
                    expected: n,
                });
            }
            residual_adjusted(layer)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let depth = adjusted.len();
    let mut graph: DiGraph<(), u64> = DiGraph::with_capacity(depth * n + 1, depth * n * n);
    let mut nodes: Vec<Vec<NodeIndex>> = Vec::with_capacity(depth + 1);
    for _ in 0..depth {
        nodes.push((0..n).map(|_| graph.add_node(())).collect());
    }
    let sink = graph.add_node(());
    for (l, a) in adjusted.iter().enumerate() {
        let targets: Vec<(usize, NodeIndex)> = if l + 1 == depth {
            vec![(query, sink)]
        } else {
            (0..n).map(|i| (i, nodes[l + 1][i])).collect()
        };
        for (i, to) in targets {
            for j in 0..n {
                let capacity = (a.get(i, j) * FLOW_SCALE).round() as u64;
                if capacity > 0 {
                    graph.add_edge(nodes[l][j], to, capacity);
                }
            }
        }
    }
    Ok(nodes[0]
        .par_iter()
        .map(|&source| petgraph::algo::dinics(&graph, source, sink).0 as f64 / FLOW_SCALE)
        .collect())
}

/// Rollout importance of every input token for the prediction made at `query` (`[CLS]` = 0).
pub fn rollout_importance(
    layers: &[LayerAttention],
    query: usize,
) -> Result<Vec<f64>, ExplainError> {
    let r = rollout(layers)?;
    if query >= r.n() {
        return Err(ExplainError::OutOfRange {
            what: "query token",
            index: query,
            count: r.n(),
        });
    }
    Ok(r.row(query).to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn received_attention_sums_columns_over_the_chosen_rows() {
        // One head, three tokens; rows 1..3 summed: column sums of the last two rows.
        let l = [
            LayerAttention::new(1, 3, vec![1.0, 0.0, 0.0, 0.2, 0.5, 0.3, 0.1, 0.1, 0.8]).unwrap(),
        ];
        close(
            &received_attention(&l, 0, None, 1..3).unwrap(),
            &[0.3, 0.6, 1.1],
            1e-6,
        );
        assert!(received_attention(&l, 0, None, 1..4).is_err());
    }

    #[test]
    fn head_mean_and_raw_rows() {
        // Two heads over two tokens.
        let l = [LayerAttention::new(2, 2, vec![1.0, 0.0, 0.5, 0.5, 0.0, 1.0, 0.5, 0.5]).unwrap()];
        close(&raw_attention(&l, 0, None, 0).unwrap(), &[0.5, 0.5], 1e-12);
        close(
            &raw_attention(&l, 0, Some(1), 0).unwrap(),
            &[0.0, 1.0],
            1e-12,
        );
        assert_eq!(
            raw_attention(&l, 0, Some(2), 0).unwrap_err().to_string(),
            "head 2 is out of range (there are 2)"
        );
        assert!(raw_attention(&l, 1, None, 0).is_err());
    }

    /// Worked by hand. Layer 1: A = [[0.5, 0.5], [0, 1]] → Â = [[0.75, 0.25], [0, 1]].
    /// Layer 2: A = [[0, 1], [1, 0]] → Â = [[0.5, 0.5], [0.5, 0.5]].
    /// R = Â₂ Â₁ = [[0.375, 0.625], [0.375, 0.625]].
    #[test]
    fn rollout_matches_hand_computation() {
        let l1 = LayerAttention::new(1, 2, vec![0.5, 0.5, 0.0, 1.0]).unwrap();
        let l2 = LayerAttention::new(1, 2, vec![0.0, 1.0, 1.0, 0.0]).unwrap();
        let r = rollout(&[l1.clone(), l2.clone()]).unwrap();
        close(r.row(0), &[0.375, 0.625], 1e-12);
        close(r.row(1), &[0.375, 0.625], 1e-12);
        // Order matters: Â₁ Â₂ = [[0.5, 0.5], [0.5, 0.5]].
        close(
            &rollout_importance(&[l2, l1], 0).unwrap(),
            &[0.5, 0.5],
            1e-12,
        );
    }

    #[test]
    fn rollout_rows_stay_distributions_and_identity_attention_is_a_fixed_point() {
        let n = 3;
        let uniform = LayerAttention::new(2, n, vec![1.0 / 3.0; 2 * n * n]).unwrap();
        let r = rollout(&[uniform.clone(), uniform.clone(), uniform]).unwrap();
        for i in 0..n {
            assert!((r.row(i).iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        let eye: Vec<f32> = Square::identity(n)
            .row(0)
            .iter()
            .chain(Square::identity(n).row(1))
            .chain(Square::identity(n).row(2))
            .map(|&v| v as f32)
            .collect();
        let identity = LayerAttention::new(1, n, eye).unwrap();
        close(
            &rollout_importance(&[identity.clone(), identity], 0).unwrap(),
            &[1.0, 0.0, 0.0],
            1e-12,
        );
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(LayerAttention::new(2, 2, vec![0.0; 7]).is_err());
        assert_eq!(rollout(&[]).unwrap_err(), ExplainError::Empty("no layers"));
        let a = LayerAttention::new(1, 2, vec![1.0, 0.0, 0.0, 1.0]).unwrap();
        let b = LayerAttention::new(1, 1, vec![1.0]).unwrap();
        assert!(rollout(&[a, b]).is_err());
    }

    /// Minimum cut by enumerating every set of nodes on the source side: an independent check
    /// of max-flow = min-cut on graphs small enough to enumerate.
    fn brute_force_flow(adjusted: &[Vec<Vec<f64>>], source: usize, query: usize) -> f64 {
        let depth = adjusted.len();
        let n = adjusted[0].len();
        // Node (l, t) for l in 0..=depth; index l * n + t.
        let count = (depth + 1) * n;
        let (s, t) = (source, depth * n + query);
        let free: Vec<usize> = (0..count).filter(|&v| v != s && v != t).collect();
        let mut best = f64::INFINITY;
        for bits in 0u32..(1 << free.len()) {
            let mut side = vec![false; count];
            side[s] = true;
            for (k, &v) in free.iter().enumerate() {
                side[v] = bits & (1 << k) != 0;
            }
            let mut cut = 0.0;
            for l in 0..depth {
                for i in 0..n {
                    for j in 0..n {
                        if side[l * n + j] && !side[(l + 1) * n + i] {
                            cut += adjusted[l][i][j];
                        }
                    }
                }
            }
            best = best.min(cut);
        }
        best
    }

    fn adjust(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
        a.iter()
            .enumerate()
            .map(|(i, row)| {
                let r: Vec<f64> = row
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| 0.5 * v + if i == j { 0.5 } else { 0.0 })
                    .collect();
                let s: f64 = r.iter().sum();
                r.into_iter().map(|v| v / s).collect()
            })
            .collect()
    }

    #[test]
    fn flow_of_one_layer_is_the_adjusted_attention_row() {
        // Â = [[0.75, 0.25], [0, 1]]: the only path from token j to [CLS] is the edge Â[0, j].
        let l = LayerAttention::new(1, 2, vec![0.5, 0.5, 0.0, 1.0]).unwrap();
        close(&attention_flow(&[l], 0).unwrap(), &[0.75, 0.25], 1e-9);
    }

    /// Worked by hand. Layer 1: Â₁ = [[0.75, 0.25], [0, 1]]; layer 2: Â₂ = [[0.5, 0.5], [0.5, 0.5]].
    /// From token 1: edges 1→(1,0) 0.25 and 1→(1,1) 1.0, then (1,0)→CLS 0.5 and (1,1)→CLS 0.5:
    /// min(0.25, 0.5) + min(1.0, 0.5) = 0.75. From token 0: only 0→(1,0) 0.75, then 0.5 → 0.5.
    #[test]
    fn flow_matches_hand_computation() {
        let l1 = LayerAttention::new(1, 2, vec![0.5, 0.5, 0.0, 1.0]).unwrap();
        let l2 = LayerAttention::new(1, 2, vec![0.0, 1.0, 1.0, 0.0]).unwrap();
        close(&attention_flow(&[l1, l2], 0).unwrap(), &[0.5, 0.75], 1e-9);
    }

    #[test]
    fn flow_equals_brute_force_min_cut_on_small_random_graphs() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for (depth, n, heads) in [(2, 3, 2), (3, 3, 1), (3, 2, 3), (2, 4, 2)] {
            let mut layers = Vec::new();
            let mut adjusted = Vec::new();
            for _ in 0..depth {
                let mut values = Vec::new();
                let mut mean = vec![vec![0.0; n]; n];
                for _ in 0..heads {
                    for i in 0..n {
                        let row: Vec<f64> = (0..n).map(|_| next() + 0.01).collect();
                        let s: f64 = row.iter().sum();
                        for j in 0..n {
                            let p = (row[j] / s) as f32;
                            values.push(p);
                            mean[i][j] += p as f64 / heads as f64;
                        }
                    }
                }
                layers.push(LayerAttention::new(heads, n, values).unwrap());
                adjusted.push(adjust(&mean));
            }
            for query in 0..n {
                let flow = attention_flow(&layers, query).unwrap();
                for source in 0..n {
                    let expected = brute_force_flow(&adjusted, source, query);
                    assert!(
                        (flow[source] - expected).abs() < 1e-6,
                        "depth {depth} n {n}: flow {source}->{query} {} vs min cut {expected}",
                        flow[source]
                    );
                }
            }
        }
    }

    #[test]
    fn flow_rejects_bad_input() {
        assert_eq!(
            attention_flow(&[], 0).unwrap_err(),
            ExplainError::Empty("no layers")
        );
        let l = LayerAttention::new(1, 2, vec![0.5, 0.5, 0.0, 1.0]).unwrap();
        assert_eq!(
            attention_flow(&[l], 2).unwrap_err().to_string(),
            "query token 2 is out of range (there are 2)"
        );
    }

    /// Not a timing test: checks that a 128-token, 6-layer graph (the size the issue asks to
    /// keep fast) is solved and gives values in [0, 1]; `attune bench` measures the speed.
    #[test]
    fn flow_handles_a_full_size_sentence() {
        let (n, heads) = (128, 2);
        let layers: Vec<LayerAttention> = (0..6)
            .map(|l| {
                let mut values = Vec::with_capacity(heads * n * n);
                for h in 0..heads {
                    for i in 0..n {
                        let row: Vec<f32> = (0..n)
                            .map(|j| 1.0 + ((i * 7 + j * 13 + l + h) % 17) as f32)
                            .collect();
                        let s: f32 = row.iter().sum();
                        values.extend(row.iter().map(|v| v / s));
                    }
                }
                LayerAttention::new(heads, n, values).unwrap()
            })
            .collect();
        let flow = attention_flow(&layers, 0).unwrap();
        assert_eq!(flow.len(), n);
        assert!(flow.iter().all(|&f| (0.0..=1.0 + 1e-9).contains(&f)));
        assert!(
            flow[0] > flow[1],
            "the query token keeps its residual share"
        );
    }
}
