fn main() -> std::process::ExitCode {
    tocsin_collector::cli::main()
}
