fn main() -> std::process::ExitCode {
    brewblox_host::app::main()
}
