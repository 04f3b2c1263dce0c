from sizeup._entry import run

run()
