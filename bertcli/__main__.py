from bertcli.cli.main import main

main()
