# %% [markdown]
# # Lesson 2: Recognising indicators in vignettes
#
# A social worker who meets one victim a year cannot remember 67 indicators. This lesson
# trains the eye on short **vignettes**: stories of synthetic persons (no real person is
# described) from which the ILO / European Commission indicators of trafficking (2009) can
# be inferred. No vignette names an indicator: you have to recognise it.
#
# The indicators are grouped in six **dimensions**: deceptive recruitment, coercive
# recruitment, recruitment by abuse of vulnerability, exploitative conditions of work,
# coercion at destination and abuse of vulnerability at destination. Each indicator is
# strong, medium or weak. An adult is presumed a victim when a recruitment dimension, the
# exploitation dimension and a destination dimension are each present; a child needs only
# recruitment and exploitation (lesson 6).

# %% tags=["parameters"]
seed = 2007  # which cases this lesson uses
language = "en"  # "en" or "da"

# %%
from IPython.display import Markdown, display

from studylib import training
from studylib.training.reader import read_indicators

exercises = training.ExerciseSet(seed=seed, student=1, cases=2, language=language)
check = exercises.check
training.indicator_table()  # every indicator: its code, dimension and text

# %% [markdown]
# ## A worked example
#
# This case is worked through for you: read it, then look at its key.

# %%
example = next(case for case in (training.draw_case(seed * 1000 + i) for i in range(1000))
               if training.answer_key(case).presumed_victim)
display(Markdown(training.vignette(example, language)))

# %%
example_key = training.answer_key(example)
print("rule:", example_key.rule, "| presumed victim:", example_key.presumed_victim, "|", example_key.explanation or "no dimension present")
example_key.table()

# %% [markdown]
# `check` gives feedback on an answer. Here is a half-right answer to the example: the first
# half of the key's indicators, and one indicator the story does not tell.

# %%
half = set(example_key.codes[: len(example_key.codes) // 2])
not_told = next(code for code in training.indicator_table()["code"] if code not in example_key.codes)
training.check(half | {not_told}, example)

# %% [markdown]
# A simple keyword reader of studylib finds the indicators from phrases in the text; it is
# how we test that every vignette carries its indicators. It is no substitute for reading:
# a real conversation does not use our phrases.

# %%
read_indicators(training.vignette(example, language), language)

# %% [markdown]
# ### Exercise 1
#
# Read case 1. Write the codes of the indicators you find in `answers_1` (a set of codes,
# or `"none"` if you find none), then run the check.

# %%
display(Markdown(exercises.vignette(1)))

# %% tags=["exercise"]
answers_1 = set()  # e.g. {"dr_deceived_job", "cd_isolation"}

# %% tags=["solution"]
key_1 = exercises.keys()[0]
print("Answer key of case 1:", ", ".join(key_1.codes) or "none", "|", key_1.explanation or "no dimension present")
answers_1 = set(key_1.codes) or "none"

# %%
check(answers_1, case=1)

# %% [markdown]
# ### Exercise 2
#
# The same for case 2.

# %%
display(Markdown(exercises.vignette(2)))

# %% tags=["exercise"]
answers_2 = set()  # your indicator codes

# %% tags=["solution"]
key_2 = exercises.keys()[1]
print("Answer key of case 2:", ", ".join(key_2.codes) or "none", "|", key_2.explanation or "no dimension present")
answers_2 = set(key_2.codes) or "none"

# %%
check(answers_2, case=2)

# %% [markdown]
# ### Exercise 3 (discussion)
#
# Debt and confiscated documents appear both in recruitment and at destination. Why does the
# catalogue count them twice, and with different grades?

# %% [markdown] tags=["solution"]
# *Teacher's notes.* Each dimension asks a different question: was the person recruited by
# coercion (a debt signed before leaving, a passport taken on the way), or is the person held
# at destination (a debt that grows, papers kept by the employer)? At destination, debt
# bondage and confiscated documents are strong indicators for adults because they keep the
# person in the work; in recruitment they are medium.
