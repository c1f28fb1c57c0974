"""tools/check_notebooks.py catches what it promises to catch, and lets the rest through."""

from __future__ import annotations

from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tools import check_notebooks as check

EXERCISE = "**Exercise 1.** Do it.\n\n<details><summary>Hint</summary>Look.</details>"


def good_cells() -> list:
    return [
        new_markdown_cell("[Index](../00-index.ipynb)", metadata={"tags": ["navigation"]}),
        new_markdown_cell("**Predict.** How many?", metadata={"tags": ["predict"]}),
        new_code_cell("print(30)"),
        new_markdown_cell(EXERCISE, metadata={"tags": ["exercise"]}),
        new_code_cell("# Solution to exercise 1\nprint(1)",
                      metadata={"tags": ["solution"], "jupyter": {"source_hidden": True}}),
        new_markdown_cell("---\n\n[Index](../00-index.ipynb)",
                          metadata={"tags": ["navigation-footer"]}),
    ]


def test_a_notebook_of_the_right_shape_passes() -> None:
    assert check.shape_problems(new_notebook(cells=good_cells())) == []


def test_exercise_without_hint_or_solution_is_reported() -> None:
    cells = good_cells()
    cells[3] = new_markdown_cell("**Exercise 1.** Do it.", metadata={"tags": ["exercise"]})
    del cells[4]
    problems = "\n".join(check.shape_problems(new_notebook(cells=cells)))
    assert "without a '<details><summary>Hint</summary>' block" in problems
    assert "not followed by a cell tagged 'solution'" in problems


def test_visible_solution_and_orphan_solution_are_reported() -> None:
    cells = good_cells()
    cells[4].metadata["jupyter"]["source_hidden"] = False
    cells.insert(2, new_markdown_cell("<details>answer</details>",
                                      metadata={"tags": ["solution"]}))
    problems = "\n".join(check.shape_problems(new_notebook(cells=cells)))
    assert "solution code cell is not hidden" in problems
    assert "cell 2: a solution that follows no exercise" in problems


def test_long_cells_mixed_runtimes_and_missing_prompts_are_reported() -> None:
    cells = good_cells()
    cells[2] = new_code_cell("\n".join(f"x{i} = {i}" for i in range(26)))
    cells.insert(3, new_code_cell("env = simpy.Environment()\nresult = await fetch()"))
    del cells[1]  # the predict prompt
    cells.pop()  # the closing navigation
    problems = "\n".join(check.shape_problems(new_notebook(cells=cells)))
    assert "26 lines of code" in problems
    assert "mixes runtimes ['SimPy', 'asyncio']" in problems
    assert "no cell tagged 'predict'" in problems
    assert "'navigation-footer'" in problems


def executed(markdown: str, output: str) -> list:
    code = new_code_cell("run()", outputs=[new_output("stream", name="stdout", text=output)])
    return [code, new_markdown_cell(markdown)]


def test_prose_numbers_must_come_from_the_code_around_them() -> None:
    cells = executed("Forty orders, 10 % of them failing, six times less work.",
                     "orders: 30, failing: 0.2\n")
    problems = check.prose_problems(new_notebook(cells=cells))
    assert len(problems) == 1
    for drift in ("forty", "10", "six"):
        assert drift in problems[0]


def test_rounded_figures_percentages_and_exempt_numbers_pass() -> None:
    cells = executed(
        "About 0.18 of them, that is 18 %, after 1,234 calls; theory says $1.1^3 = 1.33$, "
        "`retries=7`, and Demers reports 0.176 (1987). <!-- not-measured: 0.176 -->",
        "fraction 0.1763 calls 1234\n")
    assert check.prose_problems(new_notebook(cells=cells)) == []


def test_numbers_beyond_the_window_do_not_count() -> None:
    far = [new_code_cell("print(99)", outputs=[new_output("stream", name="stdout",
                                                          text="99\n")])]
    near = [new_code_cell("pass") for _ in range(check.WINDOW)]
    cells = far + near + [new_markdown_cell("We saw 99 of them.")]
    assert "99" in "".join(check.prose_problems(new_notebook(cells=cells)))
