//! The release build's code laid out for a small resident set: the SDK's functions that
//! start-up and idle work run side by side (see the `link-layout` crate).

fn main() {
    link_layout::plugin();
}
