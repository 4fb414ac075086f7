"""The scorezoo demo (:mod:`scorezoo.demo`; also ``python -m scorezoo.demo`` and ``scorezoo demo``): ``python app.py
--help`` lists the options."""
from scorezoo.demo import main

if __name__ == "__main__":
    main()
