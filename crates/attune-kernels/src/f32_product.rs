//! f32 `C = A · B` on strided views, through the `gemm` crate — the kernels candle's CPU matmul
//! runs — so a custom op can multiply raw buffers (a transposed operand costs no copy: only its
//! strides change).
use crate::KernelError;

/// A matrix view over a slice: element `(r, c)` is `data[r · row_stride + c · col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A dense row-major `[rows, cols]` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, as a view of the same data.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Checks that every element the view names lies inside `data`.
    fn check(&self, what: &'static str) -> Result<(), KernelError> {
        if self.rows == 0 || self.cols == 0 {
            return Ok(());
        }
        let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
        if last < self.data.len() {
            Ok(())
        } else {
            Err(KernelError::Length {
                what,
                expected: last + 1,
                got: self.data.len(),
            })
        }
    }
}

/// `a · b` as a new row-major `[a.rows, b.cols]` matrix, on every thread of rayon's pool.
pub fn matmul_f32(a: MatRef<'_>, b: MatRef<'_>) -> Result<Vec<f32>, KernelError> {
    a.check("left operand")?;
    b.check("right operand")?;
    if a.cols != b.rows {
        return Err(KernelError::Length {
            what: "inner dimension of the right operand",
            expected: a.cols,
            got: b.rows,
        });
    }
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let mut dst = vec![0f32; m * n];
    if m == 0 || n == 0 || k == 0 {
        return Ok(dst);
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `check` proved every element either view addresses lies inside its slice, `dst`
    // holds exactly m · n elements addressed row-major, and `read_dst = false` means `dst` is
    // only written.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(dst)
}
