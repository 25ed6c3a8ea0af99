# %% [markdown]
# # Lesson 1: Exploring synthetic cases
#
# studylib never trains anyone on a real person. Everything in these lessons is **synthetic**:
# `studylib synth` invents a whole population of persons in exploitation, lets the
# organisations (outreach team, hotline, police, NGOs, municipalities, ...) meet some of them,
# and writes the 14 registration forms those meetings would have produced, with fake names and
# CPR numbers. Ingest then turns the forms into a pseudonymised dataset, exactly as it does for
# real exports.
#
# In this lesson you look at that dataset (persons, events, indicators and cases) and at the
# one folder real data never has: `truth/`, what actually happened.
#
# Exercises are marked **Exercise**; write your code in the cell under each.

# %% tags=["parameters"]
from studylib import paths

data_dir = str(paths.demo_dataset_dir())  # the pseudonymised demo dataset (made on demand)
truth_dir = str(paths.demo_raw_dir() / "truth")  # the generator's truth (synthetic data only)

# %%
from pathlib import Path

import pandas as pd

from studylib.demo import load_dataset
from studylib.data.form_catalogue import form_catalogue

dataset = load_dataset(data_dir)  # (re)creates the demo dataset the first time
{name: len(getattr(dataset, name)) for name in ("persons", "events", "indicators", "cases")}

# %% [markdown]
# ## The 14 forms
#
# Every contact with a person, and every step after it, is one form. Each row of `events`
# is one submitted form.

# %%
forms = pd.DataFrame([(f.code, f.title, f.purpose) for f in form_catalogue().forms], columns=["form", "title", "purpose"])
forms

# %%
dataset.events["form"].value_counts().sort_index().rename("events")

# %% [markdown]
# ## Persons and their path through the forms
#
# `person_id` is a keyed token (lesson 3): the same person gets the same token on every form,
# but the token says nothing about who they are. Here is one person's path.

# %%
dataset.persons.head()

# %%
person = dataset.cases.sort_values("n_lists", ascending=False)["person_id"].iloc[0]
path = dataset.events.loc[dataset.events["person_id"] == person, ["date", "form", "organisation", "region", "decision"]]
path.sort_values("date").merge(forms[["form", "title"]], on="form")

# %% [markdown]
# ## The cases table
#
# `cases` is the analysis view: one row per person, with the first contact, age, sector,
# the organisations that registered the person (`list_*`), the identification decision and
# the services received.

# %%
dataset.cases[["first_contact_year", "age_band", "sector", "exploitation", "n_lists", "decision", "outcome"]].head(10)

# %% [markdown]
# ## The truth folder
#
# Real data shows only the persons someone met. The generator also knows everyone it invented,
# whether they are victims, and who registered them. Only validation (and this lesson) may
# read it: analysis and reports never do.

# %%
truth = pd.read_parquet(Path(truth_dir) / "population.parquet")
truth[["year", "sector", "age", "victim", "registered", "list_police", "list_ngo"]].head()

# %% [markdown]
# ### Exercise 1
#
# How many persons of the true population were **never registered** by any organisation,
# and what share of the true population is that? Put the number in `never_registered` and the
# share (between 0 and 1) in `share_unseen`.

# %% tags=["exercise"]
never_registered = None  # your code here
share_unseen = None  # your code here

# %% tags=["solution"]
never_registered = int((~truth["registered"]).sum())
share_unseen = never_registered / len(truth)

# %%
print(f"never registered: {never_registered}, share of the true population: {share_unseen}")

# %% [markdown]
# ### Exercise 2
#
# Among the **registered** persons, what share are victims in truth, per sector? Compare it
# with the share the centre identified (`decision == "identified"` in `cases`). Put the two
# series (indexed by sector) in `true_share` and `identified_share`.

# %% tags=["exercise"]
true_share = None  # your code here
identified_share = None  # your code here

# %% tags=["solution"]
seen = truth[truth["registered"]]
true_share = seen.groupby("sector", observed=True)["victim"].mean()
identified_share = (dataset.cases["decision"] == "identified").groupby(dataset.cases["sector"], observed=True).mean()

# %%
pd.DataFrame({"victims in truth": true_share, "identified": identified_share}) if true_share is not None else "not answered yet"

# %% [markdown]
# ### Exercise 3 (discussion)
#
# The identified share and the true share differ. Name two reasons, and say why a real
# centre can never make this comparison.

# %% [markdown] tags=["solution"]
# *Teacher's notes.* Identification needs an interview (F04) and a decision (F05); many
# registered persons never get one (they disappear, refuse, or the decision is pending), and
# the indicator checklist misses some victims and flags some non-victims. In the truth, every
# victim counts. A real centre has no truth folder: it only sees the forms, which is why
# lesson 5 estimates the unseen instead of counting it.
