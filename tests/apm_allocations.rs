//! The echo canceller and the rest of the capture processing run on the engine thread every
//! 20 ms of a call: once warmed up, they must not allocate (third_party/PATCHES.md, patch 10).
//! Its own binary, so that the counting allocator below is the global one of this test alone.

use dialtone::engine::media::apm::{AudioProcessor, ProcessingRate};
use dialtone::engine::media::devices::FRAME_SAMPLES;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::VecDeque;

/// The system allocator, counting the allocations (and reallocations) each thread makes.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: a thread being torn down has no counter left; nothing to count then.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call goes to `System` unchanged; counting touches only a const thread-local.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// A call's audio: a far end of noise bursts, its echo 60 ms later at half the level, and a
/// near-end tone every other second over it, so that AEC3 converges, its linear filter's output
/// is used, and noise suppression and AGC2 have speech and silence to work on.
struct Call {
    seed: u32,
    n: usize,
    echo: VecDeque<i16>,
}

impl Call {
    fn new() -> Call {
        Call {
            seed: 0x2545_f491,
            n: 0,
            echo: VecDeque::from(vec![0; 60 * 48]),
        }
    }

    fn frame(&mut self, speaker: &mut [i16], mic: &mut [i16]) {
        for (s, m) in speaker.iter_mut().zip(mic.iter_mut()) {
            self.seed ^= self.seed << 13;
            self.seed ^= self.seed >> 17;
            self.seed ^= self.seed << 5;
            let talking = self.n % 12_000 < 8_640;
            *s = if talking {
                (self.seed >> 20) as i16 - 2048
            } else {
                0
            };
            let near = if self.n / 48_000 % 2 == 1 {
                ((self.n as f32 * 0.06).sin() * 2_000.0) as i16
            } else {
                0
            };
            *m = self.echo.pop_front().unwrap_or(0) / 2 + near;
            self.echo.push_back(*s);
            self.n += 1;
        }
    }
}

/// Allocations on this thread while `frames` frames go through a processor at `rate` (capture,
/// then the render reference), after 3 s of the same to warm it up.
fn allocations_per_call(rate: ProcessingRate, frames: usize) -> u64 {
    let mut apm = AudioProcessor::new(rate);
    let mut call = Call::new();
    let (mut speaker, mut mic) = (vec![0i16; FRAME_SAMPLES], vec![0i16; FRAME_SAMPLES]);
    let mut run = |apm: &mut AudioProcessor, frames: usize| {
        for _ in 0..frames {
            call.frame(&mut speaker, &mut mic);
            apm.process_capture(&mut mic);
            apm.process_render(&speaker);
        }
    };
    run(&mut apm, 150);
    let before = allocations();
    run(&mut apm, frames);
    let made = allocations() - before;
    assert_eq!(apm.errors, 0);
    made
}

#[test]
fn after_warm_up_a_calls_processing_allocates_only_in_agc2s_limiter() {
    // sonora-agc2 0.2.0 (crates.io, not patched here) collects a `Vec` of the channels in
    // `Limiter::process`: one allocation per 10 ms block, two per frame. Nothing else may
    // allocate; when that one goes too, this expects none.
    const LIMITER_PER_FRAME: u64 = 2;
    let frames = 200;
    for rate in [ProcessingRate::Full, ProcessingRate::Wideband] {
        let made = allocations_per_call(rate, frames);
        assert_eq!(
            made,
            LIMITER_PER_FRAME * frames as u64,
            "{rate:?}: {made} allocations in {frames} frames; the limiter's are {}",
            LIMITER_PER_FRAME * frames as u64
        );
    }
}

#[test]
fn the_counter_sees_an_allocation_on_this_thread() {
    // The allocator is the one counting: a test that could not fail otherwise.
    let before = allocations();
    let v = std::hint::black_box(vec![1u8; 64]);
    assert_eq!(allocations() - before, 1);
    drop(v);
}
