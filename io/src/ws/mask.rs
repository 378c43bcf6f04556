//! WebSocket payload masking (RFC 6455 section 5.3): XOR with a 4-byte key.
//!
//! [`apply_mask`] is the one entry point the connection uses. It picks a kernel once per
//! process (AVX2, then SSE2, then a portable word-at-a-time loop), caches the choice in an
//! atomic, and takes a `phase` so a payload that arrives in several reads can be unmasked
//! chunk by chunk. [`apply_mask_bytewise`] is the obviously-correct reference every kernel
//! is tested against.
//!
//! This module does not parse frames, choose keys or know which role masks: it only XORs.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::BytesMut;

/// Unmasks (or masks: XOR is symmetric) `buf` in place with `key`, starting at byte `phase`
/// of the key, so a payload can be unmasked in chunks: a chunk that starts `n` bytes into
/// the payload uses `phase = n % 4`.
///
/// Picks AVX2 / SSE2 / portable at run time; the CPU is probed once and the choice cached.
/// A `phase` of 4 or more is taken modulo 4.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], phase: usize) {
    // Short buffers (most control frames and small WAMP messages) are not worth the
    // alignment head of a vector kernel; the portable loop handles them in a few words.
    if buf.len() < SHORT {
        mask_short(buf, key, phase);
        return;
    }
    match selected_kernel() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `selected_kernel` returns `Avx2` only after `is_x86_feature_detected!`
        // reported AVX2 on this CPU, which is the one precondition of `x86::avx2`.
        Kernel::Avx2 => unsafe { x86::avx2(buf, key, phase) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, `Sse2` is returned only after SSE2 was detected.
        Kernel::Sse2 => unsafe { x86::sse2(buf, key, phase) },
        _ => apply_mask_fallback(buf, key, phase),
    }
}

/// Portable word-at-a-time masking: 32-byte blocks of four `u64` XORs (which LLVM turns into
/// vector instructions of the baseline target), then single `u64` words, then bytes.
///
/// Same contract as [`apply_mask`]; used for short buffers and CPUs without SSE2/AVX2.
pub fn apply_mask_fallback(buf: &mut [u8], key: [u8; 4], phase: usize) {
    let key = rotate(key, phase);
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    // Every block and word length below is a multiple of 4, so the key phase is the same at
    // the start of each one and at the start of the tail.
    let mut blocks = buf.chunks_exact_mut(32);
    for block in &mut blocks {
        for lane in block.chunks_exact_mut(8) {
            xor_word(lane, word);
        }
    }
    let mut words = blocks.into_remainder().chunks_exact_mut(8);
    for lane in &mut words {
        xor_word(lane, word);
    }
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

/// [`apply_mask_fallback`] without its 32-byte block loop: for buffers under [`SHORT`]
/// bytes (small messages, control frames) the block setup costs more than it saves.
#[inline]
fn mask_short(buf: &mut [u8], key: [u8; 4], phase: usize) {
    let key = rotate(key, phase);
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut words = buf.chunks_exact_mut(8);
    for lane in &mut words {
        xor_word(lane, word);
    }
    // Every word is 8 bytes, so the tail starts at key phase 0 again.
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

/// Appends `src` unmasked to `dst` in one pass: the same bytes as `extend_from_slice`
/// followed by [`apply_mask`] on the new tail, without reading and writing them twice.
/// Returns whether every appended byte is ASCII (below 0x80), found in the same pass, so a
/// text message's UTF-8 validation can skip an all-ASCII chunk.
///
/// For a receiver that copies each payload chunk out of a shared read buffer: copying and
/// unmasking are both memory-bound, so fusing them saves a pass.
pub fn unmask_into(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4], phase: usize) -> bool {
    dst.reserve(src.len());
    let start = dst.len();
    let (written, ascii) = unmask_to_uninit(dst.spare_capacity_mut(), src, key, phase);
    // SAFETY: `reserve` made room for `src.len()` bytes, so `unmask_to_uninit` initialised
    // `written == src.len()` bytes of the spare capacity right after the old length.
    unsafe { dst.set_len(start + written) };
    ascii
}

/// [`unmask_into`] for a `BytesMut` (the per-read arena small messages are cut from).
#[inline]
pub fn unmask_into_bytes(dst: &mut BytesMut, src: &[u8], key: [u8; 4], phase: usize) -> bool {
    dst.reserve(src.len());
    let start = dst.len();
    let (written, ascii) = unmask_to_uninit(dst.spare_capacity_mut(), src, key, phase);
    // SAFETY: as in `unmask_into`: `written == src.len()` bytes after the old length were
    // initialised, inside the capacity `reserve` guaranteed.
    unsafe { dst.set_len(start + written) };
    ascii
}

/// Writes `src` unmasked (from key byte `phase`) to the start of `dst` and returns how many
/// bytes it wrote, `min(src.len(), dst.len())`, and whether they are all ASCII. Every one of
/// those bytes is initialised when it returns; nothing past them is touched.
#[inline]
pub fn unmask_to_uninit(
    dst: &mut [MaybeUninit<u8>],
    src: &[u8],
    key: [u8; 4],
    phase: usize,
) -> (usize, bool) {
    let len = src.len().min(dst.len());
    #[cfg(target_arch = "x86_64")]
    if len >= SHORT && selected_kernel() == Kernel::Avx2 {
        let (dst, src) = (&mut dst[..len], &src[..len]);
        // SAFETY: `selected_kernel` returns `Avx2` only after AVX2 was detected on this CPU,
        // and `dst` and `src` have the same length, the kernel's other precondition.
        let ascii = unsafe { x86::avx2_to(dst, src, key, phase) };
        return (len, ascii);
    }
    (len, unmask_to_portable(dst, src, key, phase))
}

/// The portable kernel of [`unmask_to_uninit`]: `u64` words, then one `u32`, then bytes,
/// through raw pointers (the safe `chunks_exact` form cost 90 instructions for a 16-byte
/// message, more than the rest of reading it). Writes `min(dst.len(), src.len())` bytes.
#[inline]
fn unmask_to_portable(dst: &mut [MaybeUninit<u8>], src: &[u8], key: [u8; 4], phase: usize) -> bool {
    let len = src.len().min(dst.len());
    let key = rotate(key, phase);
    let k32 = u32::from_ne_bytes(key);
    // The key twice: the same in either byte order, since both halves are equal.
    let k64 = u64::from(k32) | (u64::from(k32) << 32);
    let from = src.as_ptr();
    let to = dst.as_mut_ptr().cast::<u8>();
    let mut high = 0u64;
    let mut i = 0;
    while i + 8 <= len {
        // SAFETY: `i + 8 <= len`, and `len` is at most the length of both slices, so the
        // 8-byte read stays inside `src` and the write inside `dst`; both are unaligned
        // accesses, which `read_unaligned`/`write_unaligned` allow.
        let w = unsafe { from.add(i).cast::<u64>().read_unaligned() } ^ k64;
        // SAFETY: as above.
        unsafe { to.add(i).cast::<u64>().write_unaligned(w) };
        high |= w;
        i += 8;
    }
    if i + 4 <= len {
        // SAFETY: `i + 4 <= len`, as for the words above.
        let w = unsafe { from.add(i).cast::<u32>().read_unaligned() } ^ k32;
        // SAFETY: as above.
        unsafe { to.add(i).cast::<u32>().write_unaligned(w) };
        high |= u64::from(w);
        i += 4;
    }
    // `i` is a multiple of 4 here, so byte `i + j` uses key byte `j`.
    for (j, k) in key.iter().enumerate().take(len - i) {
        // SAFETY: `i + j < len` (`take(len - i)`), inside both slices.
        let b = unsafe { from.add(i + j).read() } ^ k;
        // SAFETY: as above.
        unsafe { to.add(i + j).write(b) };
        high |= u64::from(b);
    }
    high & 0x8080_8080_8080_8080 == 0
}

/// The reference: one byte at a time, `buf[i] ^= key[(phase + i) % 4]`.
///
/// Same contract as [`apply_mask`]; kept public so benchmarks and tests can compare against
/// it.
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], phase: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(phase + i) & 3];
    }
}

/// A masking kernel [`apply_mask`] can pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kernel {
    /// 32-byte AVX2 vectors (x86-64 with AVX2).
    Avx2,
    /// The portable word-at-a-time loop, [`apply_mask_fallback`].
    Portable,
    /// 16-byte SSE2 vectors (every x86-64 CPU).
    Sse2,
}

impl Kernel {
    /// Whether this CPU can run the kernel.
    pub fn is_supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Self::Sse2 => std::arch::is_x86_feature_detected!("sse2"),
            Self::Portable => true,
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// The kernel [`apply_mask`] uses for buffers of 64 bytes or more on this CPU (probed on the
/// first call, then cached).
pub fn selected_kernel() -> Kernel {
    match SELECTED.load(Ordering::Relaxed) {
        AVX2 => Kernel::Avx2,
        SSE2 => Kernel::Sse2,
        PORTABLE => Kernel::Portable,
        _ => detect(),
    }
}

/// Masks `buf` with one given kernel, for benchmarks and tests that compare kernels.
///
/// Returns `Err(Unsupported)` and leaves `buf` untouched when this CPU lacks the kernel.
pub fn apply_mask_with(
    kernel: Kernel,
    buf: &mut [u8],
    key: [u8; 4],
    phase: usize,
) -> Result<(), Unsupported> {
    if !kernel.is_supported() {
        return Err(Unsupported(kernel));
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `is_supported` just confirmed AVX2 on this CPU.
        Kernel::Avx2 => unsafe { x86::avx2(buf, key, phase) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `is_supported` just confirmed SSE2 on this CPU.
        Kernel::Sse2 => unsafe { x86::sse2(buf, key, phase) },
        _ => apply_mask_fallback(buf, key, phase),
    }
    Ok(())
}

/// The CPU cannot run the requested [`Kernel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsupported(pub Kernel);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "this CPU cannot run the {:?} masking kernel", self.0)
    }
}

impl std::error::Error for Unsupported {}

/// Below this length [`apply_mask`] skips the dispatch and uses the portable loop.
const SHORT: usize = 64;

/// Cached kernel choice: `UNKNOWN` until the first probe.
static SELECTED: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const PORTABLE: u8 = 1;
const SSE2: u8 = 2;
const AVX2: u8 = 3;

/// Probes the CPU and caches the best kernel. Racing first calls all store the same value,
/// so a relaxed store is enough.
#[cold]
fn detect() -> Kernel {
    let (kernel, code) = if Kernel::Avx2.is_supported() {
        (Kernel::Avx2, AVX2)
    } else if Kernel::Sse2.is_supported() {
        (Kernel::Sse2, SSE2)
    } else {
        (Kernel::Portable, PORTABLE)
    };
    SELECTED.store(code, Ordering::Relaxed);
    kernel
}

/// The key as seen from byte `phase` of it.
#[inline]
fn rotate(key: [u8; 4], phase: usize) -> [u8; 4] {
    u32::from_le_bytes(key)
        .rotate_right(8 * (phase & 3) as u32)
        .to_le_bytes()
}

#[inline(always)]
fn xor_word(lane: &mut [u8], word: u64) {
    // The callers pass `chunks_exact_mut(8)` items, so the conversion cannot fail; the
    // `if let` keeps it panic-free anyway and compiles to nothing.
    if let Ok(bytes) = <&mut [u8; 8]>::try_from(lane) {
        *bytes = (u64::from_ne_bytes(*bytes) ^ word).to_ne_bytes();
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The x86-64 vector kernels. Both align the stores, run an unrolled vector loop and
    //! hand the tail (under one vector) to the portable loop.

    use std::arch::x86_64::{
        __m128i, __m256i, _mm256_load_si256, _mm256_loadu_si256, _mm256_movemask_epi8,
        _mm256_or_si256, _mm256_set1_epi32, _mm256_setzero_si256, _mm256_store_si256,
        _mm256_storeu_si256, _mm256_xor_si256, _mm_load_si128, _mm_set1_epi32, _mm_store_si128,
        _mm_xor_si128,
    };
    use std::mem::MaybeUninit;

    use super::{apply_mask_bytewise, apply_mask_fallback, rotate, unmask_to_portable};

    /// AVX2 kernel.
    ///
    /// # Safety
    ///
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2(buf: &mut [u8], key: [u8; 4], phase: usize) {
        // Mask bytewise up to the first 32-byte boundary so every vector access below is
        // aligned; the key phase advances by the length of that head.
        let head = buf.as_ptr().align_offset(32).min(buf.len());
        let (head_bytes, rest) = buf.split_at_mut(head);
        apply_mask_bytewise(head_bytes, key, phase);
        let phase = phase + head;
        let k = i32::from_ne_bytes(rotate(key, phase));
        let m = _mm256_set1_epi32(k);
        // 128 and 32 are multiples of 4: each block starts at the same key phase.
        let mut blocks = rest.chunks_exact_mut(128);
        for block in &mut blocks {
            let p = block.as_mut_ptr().cast::<__m256i>();
            // SAFETY: `block` is 128 bytes, i.e. four `__m256i`, starting on a 32-byte
            // boundary (the head above aligned `rest`, and 128 keeps it aligned), and the
            // `&mut` borrow makes it ours alone. AVX2 is enabled for this function.
            unsafe {
                let a = _mm256_load_si256(p);
                let b = _mm256_load_si256(p.add(1));
                let c = _mm256_load_si256(p.add(2));
                let d = _mm256_load_si256(p.add(3));
                _mm256_store_si256(p, _mm256_xor_si256(a, m));
                _mm256_store_si256(p.add(1), _mm256_xor_si256(b, m));
                _mm256_store_si256(p.add(2), _mm256_xor_si256(c, m));
                _mm256_store_si256(p.add(3), _mm256_xor_si256(d, m));
            }
        }
        let mut vectors = blocks.into_remainder().chunks_exact_mut(32);
        for vector in &mut vectors {
            let p = vector.as_mut_ptr().cast::<__m256i>();
            // SAFETY: `vector` is exactly one 32-byte-aligned `__m256i` we borrow mutably.
            unsafe { _mm256_store_si256(p, _mm256_xor_si256(_mm256_load_si256(p), m)) }
        }
        apply_mask_fallback(vectors.into_remainder(), key, phase);
    }

    /// AVX2 kernel of [`super::unmask_to_uninit`]: unaligned loads from `src`, unaligned
    /// stores into `dst`, the OR of every unmasked byte kept for the ASCII answer.
    ///
    /// # Safety
    ///
    /// The CPU must support AVX2, and `dst.len() == src.len()`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2_to(
        dst: &mut [MaybeUninit<u8>],
        src: &[u8],
        key: [u8; 4],
        phase: usize,
    ) -> bool {
        let len = src.len();
        let k = rotate(key, phase);
        let m = _mm256_set1_epi32(i32::from_ne_bytes(k));
        let from = src.as_ptr();
        let to = dst.as_mut_ptr().cast::<u8>();
        let blocks = len / 128 * 128;
        let vectors = len / 32 * 32;
        let mut high = _mm256_setzero_si256();
        let mut i = 0;
        while i < blocks {
            // SAFETY: `i + 128 <= len`: the loads stay inside `src`, and the stores inside
            // `dst`, which has the same length. Unaligned forms are used on both sides, so
            // no alignment is assumed. AVX2 is enabled here.
            unsafe {
                let a = _mm256_xor_si256(_mm256_loadu_si256(from.add(i).cast()), m);
                let b = _mm256_xor_si256(_mm256_loadu_si256(from.add(i + 32).cast()), m);
                let c = _mm256_xor_si256(_mm256_loadu_si256(from.add(i + 64).cast()), m);
                let d = _mm256_xor_si256(_mm256_loadu_si256(from.add(i + 96).cast()), m);
                _mm256_storeu_si256(to.add(i).cast::<__m256i>(), a);
                _mm256_storeu_si256(to.add(i + 32).cast::<__m256i>(), b);
                _mm256_storeu_si256(to.add(i + 64).cast::<__m256i>(), c);
                _mm256_storeu_si256(to.add(i + 96).cast::<__m256i>(), d);
                high = _mm256_or_si256(
                    high,
                    _mm256_or_si256(_mm256_or_si256(a, b), _mm256_or_si256(c, d)),
                );
            }
            i += 128;
        }
        while i < vectors {
            // SAFETY: `i + 32 <= len`, as above.
            unsafe {
                let a = _mm256_xor_si256(_mm256_loadu_si256(from.add(i).cast()), m);
                _mm256_storeu_si256(to.add(i).cast::<__m256i>(), a);
                high = _mm256_or_si256(high, a);
            }
            i += 32;
        }
        // `vectors` is a multiple of 4, so the tail starts at phase 0 of the rotated key.
        let tail_ascii = match (dst.get_mut(vectors..), src.get(vectors..)) {
            (Some(d), Some(s)) => unmask_to_portable(d, s, k, 0),
            _ => true,
        };
        _mm256_movemask_epi8(high) == 0 && tail_ascii
    }

    /// SSE2 kernel.
    ///
    /// # Safety
    ///
    /// The CPU must support SSE2 (every x86-64 CPU does).
    #[target_feature(enable = "sse2")]
    pub(super) unsafe fn sse2(buf: &mut [u8], key: [u8; 4], phase: usize) {
        // Same shape as `avx2`, with 16-byte vectors.
        let head = buf.as_ptr().align_offset(16).min(buf.len());
        let (head_bytes, rest) = buf.split_at_mut(head);
        apply_mask_bytewise(head_bytes, key, phase);
        let phase = phase + head;
        let k = i32::from_ne_bytes(rotate(key, phase));
        let m = _mm_set1_epi32(k);
        let mut blocks = rest.chunks_exact_mut(64);
        for block in &mut blocks {
            let p = block.as_mut_ptr().cast::<__m128i>();
            // SAFETY: `block` is 64 bytes, four `__m128i`, 16-byte aligned (see the head
            // above), borrowed mutably. SSE2 is enabled for this function.
            unsafe {
                let a = _mm_load_si128(p);
                let b = _mm_load_si128(p.add(1));
                let c = _mm_load_si128(p.add(2));
                let d = _mm_load_si128(p.add(3));
                _mm_store_si128(p, _mm_xor_si128(a, m));
                _mm_store_si128(p.add(1), _mm_xor_si128(b, m));
                _mm_store_si128(p.add(2), _mm_xor_si128(c, m));
                _mm_store_si128(p.add(3), _mm_xor_si128(d, m));
            }
        }
        let mut vectors = blocks.into_remainder().chunks_exact_mut(16);
        for vector in &mut vectors {
            let p = vector.as_mut_ptr().cast::<__m128i>();
            // SAFETY: `vector` is exactly one 16-byte-aligned `__m128i` we borrow mutably.
            unsafe { _mm_store_si128(p, _mm_xor_si128(_mm_load_si128(p), m)) }
        }
        apply_mask_fallback(vectors.into_remainder(), key, phase);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    type MaskFn = fn(&mut [u8], [u8; 4], usize);

    /// Every kernel this CPU runs, plus the dispatcher, by name.
    fn kernels() -> Vec<(&'static str, MaskFn)> {
        let mut all: Vec<(&'static str, MaskFn)> =
            vec![("dispatch", apply_mask), ("portable", apply_mask_fallback)];
        if Kernel::Avx2.is_supported() {
            all.push(("avx2", |b, k, p| {
                apply_mask_with(Kernel::Avx2, b, k, p).unwrap()
            }));
        }
        if Kernel::Sse2.is_supported() {
            all.push(("sse2", |b, k, p| {
                apply_mask_with(Kernel::Sse2, b, k, p).unwrap()
            }));
        }
        all
    }

    /// Checks `mask` against the reference on `len` bytes at `offset` into a buffer, from
    /// `phase`, and that the bytes around the slice are untouched.
    fn check(name: &str, mask: MaskFn, key: [u8; 4], len: usize, offset: usize, phase: usize) {
        let mut buf: Vec<u8> = (0..offset + len + 8).map(|i| (i * 7 + 3) as u8).collect();
        let mut expect = buf.clone();
        apply_mask_bytewise(&mut expect[offset..offset + len], key, phase);
        mask(&mut buf[offset..offset + len], key, phase);
        assert_eq!(
            buf, expect,
            "{name}: len {len}, offset {offset}, phase {phase}"
        );
    }

    #[test]
    fn every_kernel_matches_bytewise_at_every_length_offset_and_phase() {
        for (name, mask) in kernels() {
            for len in 0..=300 {
                for offset in 0..32 {
                    for phase in 0..4 {
                        check(name, mask, KEY, len, offset, phase);
                    }
                }
            }
        }
    }

    #[test]
    fn the_kernels_this_cpu_has_are_tested() {
        let names: Vec<_> = kernels().into_iter().map(|(n, _)| n).collect();
        if cfg!(target_arch = "x86_64") {
            assert!(names.contains(&"sse2"), "x86-64 always has SSE2");
        }
        assert_eq!(Kernel::Avx2.is_supported(), names.contains(&"avx2"));
    }

    #[test]
    fn selection_prefers_the_widest_vectors_and_is_cached() {
        let first = selected_kernel();
        let expect = if Kernel::Avx2.is_supported() {
            Kernel::Avx2
        } else if Kernel::Sse2.is_supported() {
            Kernel::Sse2
        } else {
            Kernel::Portable
        };
        assert_eq!(first, expect);
        assert_eq!(selected_kernel(), first);
        assert_ne!(SELECTED.load(Ordering::Relaxed), UNKNOWN);
    }

    #[test]
    fn unmask_into_matches_copy_then_bytewise() {
        let src: Vec<u8> = (0..340).map(|i| (i * 13 + 5) as u8).collect();
        for len in 0..=300 {
            for offset in 0..32 {
                for phase in 0..4 {
                    let part = &src[offset..offset + len];
                    let mut expect = b"kept".to_vec();
                    expect.extend_from_slice(part);
                    apply_mask_bytewise(&mut expect[4..], KEY, phase);
                    let mut dst = b"kept".to_vec();
                    let ascii = unmask_into(&mut dst, part, KEY, phase);
                    assert_eq!(ascii, expect[4..].is_ascii(), "len {len}, phase {phase}");
                    assert_eq!(dst, expect, "len {len}, offset {offset}, phase {phase}");
                }
            }
        }
    }

    /// The fused kernels on `plain` masked at `offset` into a buffer, from `phase`: the
    /// unmasked bytes and the ASCII answer must match the reference and `is_ascii`.
    fn check_fused(plain: &[u8], offset: usize, phase: usize) {
        let mut src = vec![0x55; offset];
        src.extend_from_slice(plain);
        apply_mask_bytewise(&mut src[offset..], KEY, phase);
        let src = &src[offset..];
        let ascii = plain.is_ascii();
        let what = format!("len {}, offset {offset}, phase {phase}", plain.len());
        let mut dst = b"kept".to_vec();
        assert_eq!(unmask_into(&mut dst, src, KEY, phase), ascii, "vec {what}");
        assert_eq!((&dst[..4], &dst[4..]), (&b"kept"[..], plain), "vec {what}");
        let mut arena = BytesMut::from(&b"kept"[..]);
        assert_eq!(
            unmask_into_bytes(&mut arena, src, KEY, phase),
            ascii,
            "bytes {what}"
        );
        assert_eq!(
            (&arena[..4], &arena[4..]),
            (&b"kept"[..], plain),
            "bytes {what}"
        );
        // The portable kernel on its own (the dispatcher sends only short input to it on
        // an AVX2 machine), into a longer destination whose rest stays untouched.
        let mut out = vec![MaybeUninit::new(0xee); plain.len() + 3];
        let (written, found) = unmask_to_uninit(&mut out[..plain.len()], src, KEY, phase);
        assert_eq!(written, plain.len(), "{what}");
        assert_eq!(found, ascii, "dispatch {what}");
        let portable = unmask_to_portable(&mut out[..plain.len()], src, KEY, phase);
        assert_eq!(portable, ascii, "portable {what}");
        // SAFETY: every element was initialised by `vec![MaybeUninit::new(..)]` and then
        // overwritten with initialised bytes only.
        let out: Vec<u8> = out.iter().map(|b| unsafe { b.assume_init() }).collect();
        assert_eq!(&out[..plain.len()], plain, "portable {what}");
        assert_eq!(&out[plain.len()..], &[0xee; 3], "portable {what}");
    }

    #[test]
    fn fused_unmask_matches_reference_and_finds_non_ascii_anywhere() {
        let ascii: Vec<u8> = (0..300).map(|i| b' ' + (i * 7 % 90) as u8).collect();
        for len in 0..=300 {
            for offset in 0..32 {
                for phase in 0..4 {
                    check_fused(&ascii[..len], offset, phase);
                }
            }
            // One non-ASCII byte at every position, of every value with the top bit.
            for at in 0..len {
                let mut plain = ascii[..len].to_vec();
                plain[at] = 0x80 | (at as u8);
                check_fused(&plain, at % 7, at % 4);
            }
        }
    }

    #[test]
    fn fused_unmask_writes_no_more_than_the_shorter_side() {
        let src = [0u8; 100];
        let mut out = vec![MaybeUninit::new(1u8); 40];
        assert_eq!(unmask_to_uninit(&mut out, &src, KEY, 0).0, 40);
        let mut out = vec![MaybeUninit::new(1u8); 200];
        assert_eq!(unmask_to_uninit(&mut out, &src, KEY, 0).0, 100);
        // SAFETY: initialised by `vec![MaybeUninit::new(..)]`, overwritten with bytes.
        assert_eq!(unsafe { out[150].assume_init() }, 1);
    }

    #[test]
    fn rfc_6455_example_hello() {
        // RFC 6455 section 5.7: "Hello" masked with 37 fa 21 3d.
        let mut buf = *b"Hello";
        apply_mask(&mut buf, KEY, 0);
        assert_eq!(buf, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        apply_mask(&mut buf, KEY, 0);
        assert_eq!(&buf, b"Hello");
    }

    #[test]
    fn phase_wraps_modulo_four() {
        for (name, mask) in kernels() {
            check(name, mask, KEY, 100, 3, 5);
            check(name, mask, KEY, 100, 1, 7);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_buffers_and_keys(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            key in any::<[u8; 4]>(),
            offset in 0usize..64,
            phase in 0usize..4,
        ) {
            let offset = offset.min(data.len());
            let mut expect = data.clone();
            apply_mask_bytewise(&mut expect[offset..], key, phase);
            for (name, mask) in kernels() {
                let mut buf = data.clone();
                mask(&mut buf[offset..], key, phase);
                prop_assert_eq!(&buf, &expect, "{}", name);
            }
        }

        #[test]
        fn unmasking_in_chunks_equals_unmasking_whole(
            data in proptest::collection::vec(any::<u8>(), 0..1024),
            key in any::<[u8; 4]>(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut expect = data.clone();
            apply_mask_bytewise(&mut expect, key, 0);
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
            points.push(0);
            points.push(data.len());
            points.sort_unstable();
            let mut buf = data.clone();
            for pair in points.windows(2) {
                apply_mask(&mut buf[pair[0]..pair[1]], key, pair[0]);
            }
            prop_assert_eq!(buf, expect);
        }

        #[test]
        fn unmask_into_random(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            key in any::<[u8; 4]>(),
            phase in 0usize..4,
            spare in 0usize..64,
        ) {
            let mut expect = data.clone();
            apply_mask_bytewise(&mut expect, key, phase);
            // Any existing contents and capacity are kept and grown correctly.
            let mut dst = Vec::with_capacity(spare);
            dst.extend_from_slice(&data[..spare.min(data.len())]);
            let before = dst.clone();
            let ascii = unmask_into(&mut dst, &data, key, phase);
            prop_assert_eq!(ascii, expect.is_ascii());
            prop_assert_eq!(&dst[..before.len()], &before[..]);
            prop_assert_eq!(&dst[before.len()..], &expect[..]);
        }
    }
}
