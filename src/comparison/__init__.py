"""Side-by-side comparisons: run a grid of algorithms x env configs x seeds, then report it.

- `grid`: the grid's cells from the command line or a yaml file, validated before anything runs;
- `cells`: one cell as one process of `src/main.py`, its on-disk state and how it resumes;
- `launch`: plans the cells (skip, run, resume), runs them on a backend, reports failures;
- `backends`: a local process pool or Ray tasks run the cells; `progress` shows the grid's state;
- `runs`, `stats`, `plots`, `report`: read Sacred run folders and write tables and figures.
"""
