//! Unmasking throughput: the dispatched kernel against each kernel on its own and the
//! byte-wise reference, at 16 B, 1 KiB, 64 KiB and 1 MiB; and copying a payload out of a
//! read buffer then unmasking it against the fused `unmask_into`.
//!
//! It measures only `switchyard_io::ws::mask`; correctness is the unit tests' job and no
//! figure here is asserted anywhere (they go to `BENCHMARKS.md`).

// `criterion_group!` generates a public function that cannot carry a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchyard_io::ws::mask::{
    apply_mask, apply_mask_bytewise, apply_mask_fallback, apply_mask_with, selected_kernel,
    unmask_into, Kernel,
};

const SIZES: [(usize, &str); 4] = [
    (16, "16B"),
    (1024, "1KiB"),
    (64 * 1024, "64KiB"),
    (1024 * 1024, "1MiB"),
];
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for (size, label) in SIZES {
        let mut buf: Vec<u8> = (0..size).map(|i| i as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        let dispatched = format!("dispatch({:?})", selected_kernel());
        group.bench_function(BenchmarkId::new(dispatched, label), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY), 0))
        });
        for kernel in [Kernel::Avx2, Kernel::Sse2] {
            if kernel.is_supported() {
                group.bench_function(BenchmarkId::new(format!("{kernel:?}"), label), |b| {
                    b.iter(|| apply_mask_with(kernel, black_box(&mut buf), black_box(KEY), 0))
                });
            }
        }
        group.bench_function(BenchmarkId::new("portable", label), |b| {
            b.iter(|| apply_mask_fallback(black_box(&mut buf), black_box(KEY), 0))
        });
        group.bench_function(BenchmarkId::new("bytewise", label), |b| {
            b.iter(|| apply_mask_bytewise(black_box(&mut buf), black_box(KEY), 0))
        });
    }
    group.finish();
}

fn copy_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("copy_unmask");
    for (size, label) in SIZES {
        let src: Vec<u8> = (0..size).map(|i| i as u8).collect();
        // The destination keeps its capacity across iterations: this measures the passes
        // over the bytes, not the allocator.
        let mut dst = Vec::with_capacity(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("extend+apply_mask", label), |b| {
            b.iter(|| {
                dst.clear();
                dst.extend_from_slice(black_box(&src));
                apply_mask(&mut dst, black_box(KEY), 0);
            })
        });
        group.bench_function(BenchmarkId::new("unmask_into", label), |b| {
            b.iter(|| {
                dst.clear();
                unmask_into(&mut dst, black_box(&src), black_box(KEY), 0);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, unmask, copy_out);
criterion_main!(benches);
