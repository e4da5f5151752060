/// A host built with `--features mimalloc` uses it instead of the system allocator: the
/// eventbus paths allocate on one thread and free on another (a plugin's thread and the
/// host's), which glibc's malloc serves on its slow path. Off by default: it costs idle
/// memory and start-up time. See BENCHMARKS.md, "The allocator".
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    brewblox_host::app::main()
}
