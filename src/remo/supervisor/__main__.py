from remo.supervisor.main import main

main()
