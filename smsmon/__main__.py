from smsmon.cli import main

main()
