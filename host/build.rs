//! The host's code laid out for a small resident set (see the `link-layout` crate): the
//! functions that start-up and idle work run, listed in `hot-code.ld` by
//! `bench/scripts/link-order`, side by side at the front of `.text`.

fn main() {
    link_layout::binary("hot-code.ld");
}
