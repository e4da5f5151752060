//! The fixed amount of work the shared-subscription rows (10a–10d) do per message, in the
//! bench plugin's handler and in the bare consumers alike (the harness includes this file):
//! `rounds` steps of a xorshift-multiply mix of `seed`, about 4 ns each; 5,000 rounds are
//! some 20 µs on the bench machine. Pure arithmetic, so both sides spend the same.

/// Mixes `seed` `rounds` times; the result is returned so the work cannot be optimised away.
pub fn spin(seed: u64, rounds: u32) -> u64 {
    let mut x = seed | 1;
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    std::hint::black_box(x)
}
