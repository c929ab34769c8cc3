//! Raw attention and attention rollout.
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

/// Raw attention importance: row `query` (the `[CLS]` position, 0, for classification) of one
/// layer's attention, for one head or averaged over heads.
pub fn raw_attention(
    layers: &[LayerAttention],
    layer: usize,
    head: Option<usize>,
    query: usize,
) -> Result<Vec<f64>, ExplainError> {
    let l = layers.get(layer).ok_or(ExplainError::OutOfRange {
        what: "layer",
        index: layer,
        count: layers.len(),
    })?;
    if query >= l.n {
        return Err(ExplainError::OutOfRange {
            what: "query token",
            index: query,
            count: l.n,
        });
    }
    Ok(l.matrix(head)?.row(query).to_vec())
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
        let a = layer.matrix(None)?;
        let mut data = Vec::with_capacity(n * n);
        for i in 0..n {
            let row: Vec<f64> = (0..n)
                .map(|j| 0.5 * a.get(i, j) + if i == j { 0.5 } else { 0.0 })
                .collect();
            let sum: f64 = row.iter().sum();
            data.extend(row.into_iter().map(|v| v / sum));
        }
        // Later layers multiply from the left: R_l = Â_l · R_{l-1}.
        acc = Square::new(n, data)?.matmul(&acc)?;
    }
    Ok(acc)
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
}
