//! Variable-size FFT with PFFFT's interface (sizes, buffers, ordered output, convolution).
//!
//! Dialtone patch: the transforms are `realfft`/`rustfft` (vectorised, chosen at run time)
//! instead of the published crate's scalar-only port of PFFFT's FFTPACK passes, and every
//! buffer they need is made in [`Pffft::new`]: no transform allocates. The sizes accepted, the
//! layouts, the signs and the scaling are PFFFT's.
//!
//! # Data format
//!
//! - Real, `N` floats: `[DC, Nyquist, re1, im1, re2, im2, ..., re(N/2-1), im(N/2-1)]`, where
//!   bin `k` is `sum_j x_j e^(-2πi jk/N)`; DC and Nyquist are real, so they share the first pair.
//! - Complex, `2N` floats: interleaved `[re0, im0, re1, im1, ...]`.
//!
//! The forward transform is unscaled and so is the backward one: a round trip multiplies by `N`.
//! PFFFT's unordered layout is whatever suits its [`Pffft::convolve_accumulate`]; here it is the
//! ordered layout, so `ordered` changes nothing.

use std::fmt;
use std::sync::Arc;

use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

/// FFT transform type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FftType {
    /// Real-valued transform. Input is N reals, output is N/2+1 complex bins.
    Real,
    /// Complex-valued transform. Input/output are N complex values (2N floats).
    Complex,
}

/// Variable-size FFT supporting composite sizes.
///
/// Supports PFFFT's sizes: `N = 2^a * 3^b * 5^c` with minimum N = 32 for real transforms and
/// N = 16 for complex transforms.
///
/// C sources: `webrtc/third_party/pffft/src/pffft.c` (interface),
/// `webrtc/modules/audio_processing/utility/pffft_wrapper.cc` (C++ wrapper).
#[derive(Clone)]
pub struct Pffft {
    n: usize,
    fft_type: FftType,
    engine: Engine,
}

/// The planned transforms of one size and the buffers they work in (Dialtone patch).
#[derive(Clone)]
enum Engine {
    Real {
        forward: Arc<dyn RealToComplex<f32>>,
        backward: Arc<dyn ComplexToReal<f32>>,
        /// The forward transform's input, which it overwrites: `N` reals.
        time: Vec<f32>,
        /// `N/2 + 1` bins.
        spectrum: Vec<Complex<f32>>,
        scratch: Vec<Complex<f32>>,
    },
    Complex {
        forward: Arc<dyn Fft<f32>>,
        backward: Arc<dyn Fft<f32>>,
        /// `N` values, transformed in place.
        data: Vec<Complex<f32>>,
        scratch: Vec<Complex<f32>>,
    },
}

impl fmt::Debug for Pffft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pffft")
            .field("n", &self.n)
            .field("fft_type", &self.fft_type)
            .finish_non_exhaustive()
    }
}

/// Buffer for PFFFT I/O data.
#[derive(Debug, Clone)]
pub struct PffftBuffer {
    data: Vec<f32>,
}

impl PffftBuffer {
    /// View the buffer contents as a slice.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// View the buffer contents as a mutable slice.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data
    }
}

impl Pffft {
    /// Create a new FFT setup for the given size and type
    /// (C: `pffft_new_setup`, C++: `PffftWrapper` constructor).
    ///
    /// # Panics
    ///
    /// Panics if `fft_size` is not valid (see [`is_valid_fft_size()`](Self::is_valid_fft_size)).
    pub fn new(fft_size: usize, fft_type: FftType) -> Self {
        assert!(
            Self::is_valid_fft_size(fft_size, fft_type),
            "invalid FFT size {fft_size} for {fft_type:?}"
        );
        let n = fft_size;
        let engine = match fft_type {
            FftType::Real => {
                let mut planner = RealFftPlanner::<f32>::new();
                let forward = planner.plan_fft_forward(n);
                let backward = planner.plan_fft_inverse(n);
                let scratch_len = forward.get_scratch_len().max(backward.get_scratch_len());
                Engine::Real {
                    time: forward.make_input_vec(),
                    spectrum: forward.make_output_vec(),
                    scratch: vec![Complex::default(); scratch_len],
                    forward,
                    backward,
                }
            }
            FftType::Complex => {
                let mut planner = FftPlanner::<f32>::new();
                let forward = planner.plan_fft_forward(n);
                let backward = planner.plan_fft_inverse(n);
                let scratch_len = forward
                    .get_inplace_scratch_len()
                    .max(backward.get_inplace_scratch_len());
                Engine::Complex {
                    data: vec![Complex::default(); n],
                    scratch: vec![Complex::default(); scratch_len],
                    forward,
                    backward,
                }
            }
        };
        Self {
            n,
            fft_type,
            engine,
        }
    }

    /// Check if the given FFT size is valid for the given type
    /// (C: `pffft_is_valid_size`).
    ///
    /// Valid sizes are of the form `N = 2^a * 3^b * 5^c` where:
    /// - Real: minimum N = 32, must be even
    /// - Complex: minimum N = 16
    pub fn is_valid_fft_size(fft_size: usize, fft_type: FftType) -> bool {
        // PFFFT's minimum sizes (Dialtone patch: kept so that the same sizes are accepted,
        // though the transforms here take any size).
        match fft_type {
            FftType::Real => {
                if fft_size < 32 || !fft_size.is_multiple_of(2) {
                    return false;
                }
            }
            FftType::Complex => {
                if fft_size < 16 {
                    return false;
                }
            }
        }

        // Check that N decomposes into only factors of 2, 3, 5.
        let mut n = fft_size;
        while n.is_multiple_of(2) {
            n /= 2;
        }
        while n.is_multiple_of(3) {
            n /= 3;
        }
        while n.is_multiple_of(5) {
            n /= 5;
        }
        n == 1
    }

    /// Create a buffer suitable for this FFT's I/O
    /// (C++: `CreateBuffer`, C: `pffft_aligned_malloc`).
    pub fn create_buffer(&self) -> PffftBuffer {
        let size = match self.fft_type {
            FftType::Real => self.n,
            FftType::Complex => self.n * 2,
        };
        PffftBuffer {
            data: vec![0.0; size],
        }
    }

    /// Forward FFT (C++: `ForwardTransform`, C: `pffft_transform`/`pffft_transform_ordered`).
    ///
    /// The output is in the layout of the module documentation, whether `ordered` or not
    /// (Dialtone patch: PFFFT's unordered layout is only promised to suit
    /// [`convolve_accumulate`](Self::convolve_accumulate) and an unordered backward transform).
    ///
    /// # Panics
    ///
    /// Panics if a buffer was not made by this setup's [`create_buffer`](Self::create_buffer).
    pub fn forward(&mut self, input: &PffftBuffer, output: &mut PffftBuffer, _ordered: bool) {
        let n = self.n;
        match &mut self.engine {
            Engine::Real {
                forward,
                time,
                spectrum,
                scratch,
                ..
            } => {
                time.copy_from_slice(&input.data);
                forward
                    .process_with_scratch(time, spectrum, scratch)
                    .expect("buffers are made in new for this size");
                let out = &mut output.data[..n];
                out[0] = spectrum[0].re;
                out[1] = spectrum[n / 2].re;
                for (pair, bin) in out[2..].chunks_exact_mut(2).zip(&spectrum[1..n / 2]) {
                    pair[0] = bin.re;
                    pair[1] = bin.im;
                }
            }
            Engine::Complex {
                forward,
                data,
                scratch,
                ..
            } => transform_complex(
                forward.as_ref(),
                data,
                scratch,
                &input.data,
                &mut output.data,
            ),
        }
    }

    /// Backward (inverse) FFT (C++: `BackwardTransform`, C: `pffft_transform`/`pffft_transform_ordered`).
    ///
    /// The output is NOT scaled by `1/N`. To recover the original signal,
    /// divide each output element by `N`. `ordered` changes nothing (see [`forward`](Self::forward)).
    ///
    /// # Panics
    ///
    /// Panics if a buffer was not made by this setup's [`create_buffer`](Self::create_buffer).
    pub fn backward(&mut self, input: &PffftBuffer, output: &mut PffftBuffer, _ordered: bool) {
        let n = self.n;
        match &mut self.engine {
            Engine::Real {
                backward,
                spectrum,
                scratch,
                ..
            } => {
                let packed = &input.data[..n];
                spectrum[0] = Complex::new(packed[0], 0.0);
                spectrum[n / 2] = Complex::new(packed[1], 0.0);
                for (bin, pair) in spectrum[1..n / 2]
                    .iter_mut()
                    .zip(packed[2..].chunks_exact(2))
                {
                    *bin = Complex::new(pair[0], pair[1]);
                }
                backward
                    .process_with_scratch(spectrum, &mut output.data, scratch)
                    .expect("buffers are made in new for this size, DC and Nyquist are real");
            }
            Engine::Complex {
                backward,
                data,
                scratch,
                ..
            } => transform_complex(
                backward.as_ref(),
                data,
                scratch,
                &input.data,
                &mut output.data,
            ),
        }
    }

    /// Frequency-domain convolution with accumulation
    /// (C++: `FrequencyDomainConvolution`, C: `pffft_zconvolve_accumulate`).
    ///
    /// Computes `out += scaling * (x * y)` bin by bin, where `x` and `y` come from
    /// [`forward`](Self::forward).
    pub fn convolve_accumulate(
        &self,
        x: &PffftBuffer,
        y: &PffftBuffer,
        out: &mut PffftBuffer,
        scaling: f32,
    ) {
        let a = &x.data;
        let b = &y.data;
        let ab = &mut out.data;

        let mut offset = 0;
        if self.fft_type == FftType::Real {
            // DC and Nyquist, both real, share the first pair (Dialtone patch: the ordered
            // layout's places, not FFTPACK's first and last).
            ab[0] += a[0] * b[0] * scaling;
            ab[1] += a[1] * b[1] * scaling;
            offset = 2;
        }

        for ((ab, a), b) in ab[offset..]
            .chunks_exact_mut(2)
            .zip(a[offset..].chunks_exact(2))
            .zip(b[offset..].chunks_exact(2))
        {
            let (ar, ai, br, bi) = (a[0], a[1], b[0], b[1]);
            ab[0] += (ar * br - ai * bi) * scaling;
            ab[1] += (ai * br + ar * bi) * scaling;
        }
    }
}

/// One complex transform of `input` into `output`, both interleaved, through `data` (Dialtone patch).
fn transform_complex(
    fft: &dyn Fft<f32>,
    data: &mut [Complex<f32>],
    scratch: &mut [Complex<f32>],
    input: &[f32],
    output: &mut [f32],
) {
    for (value, pair) in data.iter_mut().zip(input.chunks_exact(2)) {
        *value = Complex::new(pair[0], pair[1]);
    }
    fft.process_with_scratch(data, scratch);
    for (pair, value) in output.chunks_exact_mut(2).zip(data.iter()) {
        pair[0] = value.re;
        pair[1] = value.im;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use test_strategy::proptest;

    use super::*;

    // Dialtone patch: for the tests against a plain DFT and the allocation count at the end.
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::f64::consts::PI;

    #[test]
    fn is_valid_fft_size_basic() {
        // Powers of 2.
        assert!(Pffft::is_valid_fft_size(32, FftType::Real));
        assert!(Pffft::is_valid_fft_size(64, FftType::Real));
        assert!(Pffft::is_valid_fft_size(128, FftType::Real));
        assert!(Pffft::is_valid_fft_size(256, FftType::Real));
        assert!(Pffft::is_valid_fft_size(512, FftType::Real));
        assert!(Pffft::is_valid_fft_size(1024, FftType::Real));

        // Composite sizes.
        assert!(Pffft::is_valid_fft_size(48, FftType::Real));
        assert!(Pffft::is_valid_fft_size(96, FftType::Real));
        assert!(Pffft::is_valid_fft_size(160, FftType::Real));
        assert!(Pffft::is_valid_fft_size(480, FftType::Real));

        // Complex.
        assert!(Pffft::is_valid_fft_size(16, FftType::Complex));
        assert!(Pffft::is_valid_fft_size(32, FftType::Complex));

        // Invalid.
        assert!(!Pffft::is_valid_fft_size(0, FftType::Real));
        assert!(!Pffft::is_valid_fft_size(7, FftType::Real));
        assert!(!Pffft::is_valid_fft_size(14, FftType::Real));
        assert!(!Pffft::is_valid_fft_size(1, FftType::Real));
        assert!(!Pffft::is_valid_fft_size(3, FftType::Real)); // odd
    }

    #[test]
    fn real_roundtrip_power_of_two() {
        for &n in &[32, 64, 128, 256, 512] {
            let mut pffft = Pffft::new(n, FftType::Real);
            let mut input = pffft.create_buffer();
            let mut freq = pffft.create_buffer();
            let mut output = pffft.create_buffer();

            // Fill with test signal.
            for (i, v) in input.as_mut_slice().iter_mut().enumerate() {
                *v = (i as f32 * 0.1).sin();
            }
            let original: Vec<f32> = input.as_slice().to_vec();

            pffft.forward(&input, &mut freq, true);
            pffft.backward(&freq, &mut output, true);

            let scale = 1.0 / n as f32;
            for (i, (&o, &r)) in original.iter().zip(output.as_slice().iter()).enumerate() {
                let recovered = r * scale;
                assert!(
                    (o - recovered).abs() < 1e-4,
                    "size {n}, index {i}: original={o}, recovered={recovered}"
                );
            }
        }
    }

    #[test]
    fn real_roundtrip_composite() {
        for &n in &[48, 96, 160, 480] {
            let mut pffft = Pffft::new(n, FftType::Real);
            let mut input = pffft.create_buffer();
            let mut freq = pffft.create_buffer();
            let mut output = pffft.create_buffer();

            for (i, v) in input.as_mut_slice().iter_mut().enumerate() {
                *v = (i as f32 * 0.05).cos();
            }
            let original: Vec<f32> = input.as_slice().to_vec();

            pffft.forward(&input, &mut freq, true);
            pffft.backward(&freq, &mut output, true);

            let scale = 1.0 / n as f32;
            for (i, (&o, &r)) in original.iter().zip(output.as_slice().iter()).enumerate() {
                let recovered = r * scale;
                assert!(
                    (o - recovered).abs() < 1e-3,
                    "size {n}, index {i}: original={o}, recovered={recovered}"
                );
            }
        }
    }

    #[test]
    fn complex_roundtrip() {
        for &n in &[16, 32, 64, 128] {
            let mut pffft = Pffft::new(n, FftType::Complex);
            let mut input = pffft.create_buffer();
            let mut freq = pffft.create_buffer();
            let mut output = pffft.create_buffer();

            for (i, v) in input.as_mut_slice().iter_mut().enumerate() {
                *v = ((i as f32) * 0.07).sin();
            }
            let original: Vec<f32> = input.as_slice().to_vec();

            pffft.forward(&input, &mut freq, true);
            pffft.backward(&freq, &mut output, true);

            let scale = 1.0 / n as f32;
            for (i, (&o, &r)) in original.iter().zip(output.as_slice().iter()).enumerate() {
                let recovered = r * scale;
                assert!(
                    (o - recovered).abs() < 1e-4,
                    "size {n}, index {i}: original={o}, recovered={recovered}"
                );
            }
        }
    }

    #[test]
    fn convolve_accumulate_basic() {
        let n = 512;
        let mut pffft = Pffft::new(n, FftType::Real);
        let mut input = pffft.create_buffer();
        let mut freq_x = pffft.create_buffer();
        let mut freq_y = pffft.create_buffer();
        let mut conv = pffft.create_buffer();
        let mut output = pffft.create_buffer();

        // Create impulse.
        input.as_mut_slice()[0] = 1.0;
        pffft.forward(&input, &mut freq_x, false);

        // Create delayed impulse.
        for v in input.as_mut_slice().iter_mut() {
            *v = 0.0;
        }
        input.as_mut_slice()[1] = 1.0;
        pffft.forward(&input, &mut freq_y, false);

        // Convolve.
        for v in conv.as_mut_slice().iter_mut() {
            *v = 0.0;
        }
        pffft.convolve_accumulate(&freq_x, &freq_y, &mut conv, 1.0);

        // Backward.
        pffft.backward(&conv, &mut output, false);

        // Result should be a delayed impulse at index 1.
        let scale = 1.0 / n as f32;
        let out = output.as_slice();
        assert!(
            (out[0] * scale).abs() < 1e-5,
            "expected ~0 at 0, got {}",
            out[0] * scale
        );
        assert!(
            (out[1] * scale - 1.0).abs() < 1e-4,
            "expected ~1 at 1, got {}",
            out[1] * scale
        );
        for (i, &v) in out.iter().enumerate().skip(2).take(n - 2) {
            assert!(
                (v * scale).abs() < 1e-4,
                "expected ~0 at {i}, got {}",
                v * scale
            );
        }
    }

    #[test]
    fn zero_input() {
        let mut pffft = Pffft::new(64, FftType::Real);
        let input = pffft.create_buffer();
        let mut output = pffft.create_buffer();
        pffft.forward(&input, &mut output, true);
        for (i, &v) in output.as_slice().iter().enumerate() {
            assert_eq!(v, 0.0, "expected zero at {i}, got {v}");
        }
    }

    #[test]
    #[should_panic(expected = "invalid FFT size")]
    fn rejects_invalid_size() {
        let _ = Pffft::new(7, FftType::Real);
    }

    // -- Property tests --

    /// Valid real FFT sizes for property tests (composite 2^a * 3^b * 5^c, >= 32).
    const REAL_SIZES: [usize; 10] = [32, 48, 64, 96, 128, 160, 256, 480, 512, 1024];

    /// Valid complex FFT sizes for property tests.
    const COMPLEX_SIZES: [usize; 6] = [16, 32, 48, 64, 128, 256];

    #[proptest]
    fn real_roundtrip_recovers_signal(
        #[strategy(prop::sample::select(&REAL_SIZES[..]))] n: usize,
        #[strategy(prop::collection::vec(-1.0f32..1.0, #n))] signal: Vec<f32>,
    ) {
        let mut pffft = Pffft::new(n, FftType::Real);
        let mut input = pffft.create_buffer();
        let mut freq = pffft.create_buffer();
        let mut output = pffft.create_buffer();

        input.as_mut_slice().copy_from_slice(&signal);
        pffft.forward(&input, &mut freq, true);
        pffft.backward(&freq, &mut output, true);

        let scale = 1.0 / n as f32;
        for (i, (&o, &r)) in signal.iter().zip(output.as_slice().iter()).enumerate() {
            prop_assert!(
                (o - r * scale).abs() < 1e-3,
                "size {n}, index {i}: original={o}, recovered={}",
                r * scale
            );
        }
    }

    #[proptest]
    fn complex_roundtrip_recovers_signal(
        #[strategy(prop::sample::select(&COMPLEX_SIZES[..]))] n: usize,
        #[strategy(prop::collection::vec(-1.0f32..1.0, #n * 2))] signal: Vec<f32>,
    ) {
        let mut pffft = Pffft::new(n, FftType::Complex);
        let mut input = pffft.create_buffer();
        let mut freq = pffft.create_buffer();
        let mut output = pffft.create_buffer();

        input.as_mut_slice().copy_from_slice(&signal);
        pffft.forward(&input, &mut freq, true);
        pffft.backward(&freq, &mut output, true);

        let scale = 1.0 / n as f32;
        for (i, (&o, &r)) in signal.iter().zip(output.as_slice().iter()).enumerate() {
            prop_assert!(
                (o - r * scale).abs() < 1e-3,
                "size {n}, index {i}: original={o}, recovered={}",
                r * scale
            );
        }
    }

    #[proptest]
    fn unordered_roundtrip_recovers_signal(
        #[strategy(prop::sample::select(&REAL_SIZES[..]))] n: usize,
        #[strategy(prop::collection::vec(-1.0f32..1.0, #n))] signal: Vec<f32>,
    ) {
        let mut pffft = Pffft::new(n, FftType::Real);
        let mut input = pffft.create_buffer();
        let mut freq = pffft.create_buffer();
        let mut output = pffft.create_buffer();

        input.as_mut_slice().copy_from_slice(&signal);
        pffft.forward(&input, &mut freq, false);
        pffft.backward(&freq, &mut output, false);

        let scale = 1.0 / n as f32;
        for (i, (&o, &r)) in signal.iter().zip(output.as_slice().iter()).enumerate() {
            prop_assert!(
                (o - r * scale).abs() < 1e-3,
                "size {n}, index {i}: original={o}, recovered={}",
                r * scale
            );
        }
    }

    #[proptest]
    fn real_linearity_holds(
        #[strategy(prop::sample::select(&REAL_SIZES[..]))] n: usize,
        #[strategy(prop::collection::vec(-1.0f32..1.0, #n))] sig_a: Vec<f32>,
        #[strategy(prop::collection::vec(-1.0f32..1.0, #n))] sig_b: Vec<f32>,
    ) {
        let mut pffft = Pffft::new(n, FftType::Real);
        let mut in_a = pffft.create_buffer();
        let mut in_b = pffft.create_buffer();
        let mut in_sum = pffft.create_buffer();
        let mut freq_a = pffft.create_buffer();
        let mut freq_b = pffft.create_buffer();
        let mut freq_sum = pffft.create_buffer();

        in_a.as_mut_slice().copy_from_slice(&sig_a);
        in_b.as_mut_slice().copy_from_slice(&sig_b);
        for (i, v) in in_sum.as_mut_slice().iter_mut().enumerate() {
            *v = sig_a[i] + sig_b[i];
        }

        pffft.forward(&in_a, &mut freq_a, true);
        pffft.forward(&in_b, &mut freq_b, true);
        pffft.forward(&in_sum, &mut freq_sum, true);

        for (i, ((&fa, &fb), &fs)) in freq_a
            .as_slice()
            .iter()
            .zip(freq_b.as_slice().iter())
            .zip(freq_sum.as_slice().iter())
            .enumerate()
        {
            let expected = fa + fb;
            prop_assert!(
                (fs - expected).abs() < 1e-2,
                "size {n}, index {i}: FFT(a+b)={fs}, FFT(a)+FFT(b)={expected}"
            );
        }
    }

    // Dialtone patch: the transforms against a plain O(n²) DFT computed in f64, at the sizes
    // AGC2's voice detector uses (480 ordered, 512 unordered with convolution).

    /// A deterministic signal in [-1, 1) (xorshift), different for each `seed`.
    fn test_signal(len: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.max(1);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as f32 / u32::MAX as f32 * 2.0 - 1.0
            })
            .collect()
    }

    /// `sum_j x_j e^(sign 2πi jk/n)` for every k: `x` is complex, as (re, im) pairs.
    fn plain_dft(x: &[(f64, f64)], sign: f64) -> Vec<(f64, f64)> {
        let n = x.len();
        (0..n)
            .map(|k| {
                x.iter()
                    .enumerate()
                    .fold((0.0, 0.0), |(re, im), (j, &(xr, xi))| {
                        let angle = sign * 2.0 * PI * ((j * k) % n) as f64 / n as f64;
                        let (s, c) = angle.sin_cos();
                        (re + xr * c - xi * s, im + xr * s + xi * c)
                    })
            })
            .collect()
    }

    /// The ordered real spectrum `[DC, Nyquist, re1, im1, re2, im2, ...]` of `x` by the plain DFT.
    fn plain_real_spectrum(x: &[f32]) -> Vec<f32> {
        let n = x.len();
        let full = plain_dft(
            &x.iter().map(|&v| (f64::from(v), 0.0)).collect::<Vec<_>>(),
            -1.0,
        );
        let mut packed = vec![0.0_f32; n];
        packed[0] = full[0].0 as f32;
        packed[1] = full[n / 2].0 as f32;
        for k in 1..n / 2 {
            packed[2 * k] = full[k].0 as f32;
            packed[2 * k + 1] = full[k].1 as f32;
        }
        packed
    }

    fn assert_close(got: &[f32], want: &[f32], tolerance: f32, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tolerance,
                "{what}, index {i}: got {g}, plain DFT gives {w}"
            );
        }
    }

    #[test]
    fn real_forward_ordered_matches_plain_dft() {
        for n in [480, 512] {
            let mut pffft = Pffft::new(n, FftType::Real);
            let mut input = pffft.create_buffer();
            let mut spectrum = pffft.create_buffer();
            let signal = test_signal(n, 7);
            input.as_mut_slice().copy_from_slice(&signal);
            pffft.forward(&input, &mut spectrum, true);
            assert_close(
                spectrum.as_slice(),
                &plain_real_spectrum(&signal),
                1e-3,
                &format!("real forward of {n}"),
            );
            // The input is left as it was.
            assert_eq!(input.as_slice(), &signal[..]);
        }
    }

    #[test]
    fn real_backward_ordered_matches_plain_dft_unnormalised() {
        for n in [480, 512] {
            let mut pffft = Pffft::new(n, FftType::Real);
            let mut spectrum = pffft.create_buffer();
            let mut output = pffft.create_buffer();
            let packed = test_signal(n, 11);
            spectrum.as_mut_slice().copy_from_slice(&packed);

            // Expand the packed half spectrum to the full Hermitian one and invert it.
            let mut full = vec![(0.0_f64, 0.0_f64); n];
            full[0] = (f64::from(packed[0]), 0.0);
            full[n / 2] = (f64::from(packed[1]), 0.0);
            for k in 1..n / 2 {
                let (re, im) = (f64::from(packed[2 * k]), f64::from(packed[2 * k + 1]));
                full[k] = (re, im);
                full[n - k] = (re, -im);
            }
            let want: Vec<f32> = plain_dft(&full, 1.0)
                .iter()
                .map(|&(re, _)| re as f32)
                .collect();

            pffft.backward(&spectrum, &mut output, true);
            assert_close(
                output.as_slice(),
                &want,
                1e-3,
                &format!("real backward of {n}"),
            );
            assert_eq!(spectrum.as_slice(), &packed[..]);
        }
    }

    #[test]
    fn real_unordered_convolution_matches_plain_circular_convolution() {
        for n in [480, 512] {
            let mut pffft = Pffft::new(n, FftType::Real);
            let mut x = pffft.create_buffer();
            let mut h = pffft.create_buffer();
            let mut x_freq = pffft.create_buffer();
            let mut h_freq = pffft.create_buffer();
            let mut product = pffft.create_buffer();
            let mut output = pffft.create_buffer();
            let x_signal = test_signal(n, 3);
            let h_signal = test_signal(n, 5);
            x.as_mut_slice().copy_from_slice(&x_signal);
            h.as_mut_slice().copy_from_slice(&h_signal);

            pffft.forward(&x, &mut x_freq, false);
            pffft.forward(&h, &mut h_freq, false);
            // Two halves accumulate to the whole product.
            let scaling = 1.0 / n as f32;
            pffft.convolve_accumulate(&x_freq, &h_freq, &mut product, 0.5 * scaling);
            pffft.convolve_accumulate(&x_freq, &h_freq, &mut product, 0.5 * scaling);
            pffft.backward(&product, &mut output, false);

            let want: Vec<f32> = (0..n)
                .map(|i| {
                    (0..n)
                        .map(|j| f64::from(x_signal[j]) * f64::from(h_signal[(i + n - j) % n]))
                        .sum::<f64>() as f32
                })
                .collect();
            assert_close(
                output.as_slice(),
                &want,
                1e-3,
                &format!("convolution of {n}"),
            );
        }
    }

    #[test]
    fn complex_forward_and_backward_match_plain_dft() {
        for n in [480, 512] {
            let mut pffft = Pffft::new(n, FftType::Complex);
            let mut input = pffft.create_buffer();
            let mut output = pffft.create_buffer();
            let signal = test_signal(2 * n, 13);
            input.as_mut_slice().copy_from_slice(&signal);
            let pairs: Vec<(f64, f64)> = signal
                .chunks_exact(2)
                .map(|c| (f64::from(c[0]), f64::from(c[1])))
                .collect();

            for (forward, sign) in [(true, -1.0), (false, 1.0)] {
                if forward {
                    pffft.forward(&input, &mut output, true);
                } else {
                    pffft.backward(&input, &mut output, true);
                }
                let want: Vec<f32> = plain_dft(&pairs, sign)
                    .iter()
                    .flat_map(|&(re, im)| [re as f32, im as f32])
                    .collect();
                assert_close(
                    output.as_slice(),
                    &want,
                    2e-3,
                    &format!(
                        "complex {} of {n}",
                        if forward { "forward" } else { "backward" }
                    ),
                );
            }
        }
    }

    // Dialtone patch: no transform allocates (they run on the audio path).

    thread_local! {
        /// Allocations made by this thread.
        static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    }

    /// The system allocator, counting each thread's allocations.
    struct CountingAllocator;

    // SAFETY: every call is passed on to the system allocator unchanged.
    unsafe impl GlobalAlloc for CountingAllocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
            // SAFETY: the caller's guarantees for `alloc` are the system allocator's.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` was allocated by the system allocator with `layout`.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: CountingAllocator = CountingAllocator;

    #[test]
    fn transforms_and_convolution_do_not_allocate() {
        for (n, fft_type) in [
            (480, FftType::Real),
            (512, FftType::Real),
            (480, FftType::Complex),
        ] {
            let mut pffft = Pffft::new(n, fft_type);
            let mut input = pffft.create_buffer();
            let signal = test_signal(input.as_slice().len(), 17);
            input.as_mut_slice().copy_from_slice(&signal);
            let mut spectrum = pffft.create_buffer();
            let mut product = pffft.create_buffer();
            let mut output = pffft.create_buffer();

            let before = ALLOCATIONS.with(Cell::get);
            for ordered in [true, false] {
                pffft.forward(&input, &mut spectrum, ordered);
                pffft.convolve_accumulate(&spectrum, &spectrum, &mut product, 0.5);
                pffft.backward(&product, &mut output, ordered);
            }
            let allocations = ALLOCATIONS.with(Cell::get) - before;
            assert_eq!(
                allocations, 0,
                "{fft_type:?} {n}: {allocations} allocations"
            );
        }
    }
}
