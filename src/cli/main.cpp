// infergrid: one binary, subcommands per job (serve, generate, bench, model ...).
int main() { return 0; }
