fn main() -> std::process::ExitCode {
    tocsin_agent::cli::main()
}
