//! What the two sides of the shared-subscription rows (10a–10d) share, written once for the
//! bench plugin and the harness's bare consumers (the harness includes this file): the fixed
//! amount of work per message, and the MQTT filter of a group.

/// The MQTT filter subscribed in `group` (as `$share/<group>/<filter>`): one of its own per
/// group, so that a message reaches one group only.
pub fn shared_filter(group: &str) -> String {
    format!("bench/shared/{group}/#")
}

/// The work: `rounds` steps of a xorshift-multiply mix of `seed`, a few ns each (5,000
/// rounds are some 10–20 µs on the bench machine); pure arithmetic, so that both sides
/// spend the same. The result is returned so that the work cannot be optimised away.
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
