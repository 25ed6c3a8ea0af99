# %% [markdown]
# # Lesson 6: Children
#
# For a person under 18 the law asks less: under the Palermo protocol a child recruited and
# exploited is a victim whatever the means used (no deception, force or abuse of
# vulnerability needs to be shown). The indicator catalogue has its own child lists, where
# several indicators weigh more than for adults, and its **child rule**: recruitment and
# exploitation suffice. Every minor the centre meets also triggers a **child protection
# notification** to the municipality (form F13). And children are exploited in more than
# prostitution: in forced crime, begging, domestic work.

# %% tags=["parameters"]
from studylib import paths

data_dir = str(paths.demo_dataset_dir())
seed = 2007
language = "en"

# %%
import pandas as pd
from IPython.display import Markdown, display

from studylib import training
from studylib.demo import load_dataset
from studylib.indicators import classify

dataset = load_dataset(data_dir)

# %% [markdown]
# ## The child rule
#
# The same four indicators, for a person of 16 and a person of 25: deceived about the job and
# the wages, excessive hours and low pay. Nobody used force or kept the person at destination.

# %%
told = ["dr_deceived_job", "dr_deceived_wages", "ec_excessive_hours", "ec_low_no_salary"]
indicators = pd.DataFrame({"person_id": ["age 16"] * 4 + ["age 25"] * 4, "indicator": told * 2})
persons = pd.DataFrame({"person_id": ["age 16", "age 25"], "age": [16, 25], "exploitation": ["labour", "labour"]})
classify(indicators, persons)[["person_id", "rule", "list", "presumed_victim", "explanation"]]

# %% [markdown]
# ## The child protection notification (F13)
#
# Every minor met should have an F13 notification. In the demo data (a count of persons goes
# through `safe_table`, even in a lesson: a printed count of minors is a habit that one day
# reaches a report):

# %%
from studylib.report import safe_table

minors = dataset.cases[dataset.cases["minor"].fillna(False)]
notified = set(dataset.events.loc[dataset.events["form"] == "F13", "person_id"])
safe_table(dataset.cases.assign(minor=dataset.cases["minor"].map({True: "minor", False: "adult"}).fillna("unknown")),
           rows="minor", caption="Persons registered, minors and adults at first contact")

# %% [markdown]
# ### Exercise 1
#
# What share of the registered minors has an F13 notification? Put it in `share_notified`.
# Then look at the F13 fields `unaccompanied` and `guardian_appointed`: what share of the
# notified minors came without a parent or guardian (`share_unaccompanied`)?

# %% tags=["exercise"]
share_notified = None  # your code here
share_unaccompanied = None  # your code here

# %% tags=["solution"]
share_notified = minors["person_id"].isin(notified).mean()
f13 = dataset.events[dataset.events["form"] == "F13"].drop_duplicates("person_id")
share_unaccompanied = f13["unaccompanied"].astype("boolean").mean()

# %%
print(f"notified: {share_notified}, unaccompanied among the notified: {share_unaccompanied}")

# %% [markdown]
# ## Forms of exploitation
#
# Minors by sector and form of exploitation, protected as a published table would be (lesson 4):

# %%
from studylib.privacy import protect_table

by_sector = pd.crosstab(minors["sector"], minors["exploitation"])
protect_table(by_sector, min_cell=5).published

# %% [markdown]
# ### Exercise 2
#
# A child case in forced crime. Read it, mark the indicators (a set of codes in `answers`)
# and check. The same indicators would not make an adult a presumed victim: which dimension
# would an adult need in addition?

# %%
def adult_rule_presumes(case) -> bool:
    """Would the same indicators make an adult a presumed victim?"""
    ind = pd.DataFrame({"person_id": 0, "indicator": list(case.indicators)}, columns=["person_id", "indicator"])
    return bool(classify(ind, pd.DataFrame({"person_id": [0], "age": [25], "exploitation": [case.exploitation]}))["presumed_victim"].iloc[0])

# a child presumed a victim under the child rule, whose indicators would not suffice for an adult
candidates = (training.draw_case(seed * 1000 + i, child=True, sector="forced_crime") for i in range(2000))
case = next(c for c in candidates if training.answer_key(c).presumed_victim and not adult_rule_presumes(c))
display(Markdown(training.vignette(case, language)))
print(f"age {case.age}: the {case.list_name.replace('_', ' ')} list applies")

# %% tags=["exercise"]
answers = set()  # your indicator codes

# %% tags=["solution"]
child_key = training.answer_key(case)
print("Answer key:", ", ".join(child_key.codes) or "none", "|", child_key.explanation or "no dimension present")
answers = set(child_key.codes) or "none"
print("An adult would also need coercion or abuse of vulnerability at destination.")

# %%
training.check(answers, case)

# %% [markdown]
# ### Exercise 3 (discussion)
#
# A 17-year-old says she is 19. Which rule does the centre apply, and what must happen
# while her age is unclear?

# %% [markdown] tags=["solution"]
# *Teacher's notes.* When age is in doubt and there are reasons to believe the person is a
# child, she is treated as a child (EU anti-trafficking directive 2011/36/EU, art. 13(2)):
# the child rule applies, the municipality is notified (F13) and a representative appointed,
# pending an age assessment. studylib's classification gives a person of *unknown* age the
# adult rule and flags `age_unknown`, so such cases must be reviewed by hand.
