# %% [markdown]
# # Lesson 5: Estimating the unseen
#
# No organisation meets every person in exploitation. When several organisations each keep
# a list of the persons they met, the overlaps of the lists tell how many nobody met: if the
# police and the outreach team meet mostly *different* persons, many must be met by neither.
# This is **multiple systems estimation** (MSE): a Poisson log-linear model of the counts of
# every combination of lists, extrapolated to the combination "on no list".
#
# On synthetic data the truth is known, so we can see when MSE works and when it fails. Its
# main enemy is **heterogeneity of capture**: some persons are easy to meet for every
# organisation, others hidden from all of them.

# %% tags=["parameters"]
seed = 2007
population = 2000  # true persons in the simulation
visibility = {"police": 0.25, "ngo": 0.2, "outreach": 0.3}  # chance of each organisation meeting a person

# %%
import numpy as np
import pandas as pd

from studylib.analysis.extent import estimate_population

rng = np.random.default_rng(seed)

def simulate_lists(heterogeneity_sd: float, rng: np.random.Generator) -> pd.DataFrame:
    """Who of the true population each organisation met, with person-level catchability."""
    z = rng.standard_normal(population)  # one hidden catchability per person, shared by all lists
    seen = {}
    for org, p in visibility.items():
        logit = np.log(p / (1 - p)) + heterogeneity_sd * z
        seen[org] = rng.random(population) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(seen)

def overlap_counts(seen: pd.DataFrame) -> pd.DataFrame:
    """The overlap table: persons on each combination of lists (on at least one list)."""
    met = seen[seen.any(axis=1)].astype(int)
    return met.value_counts().rename("count").reset_index()

lists = simulate_lists(0.0, rng)
table = overlap_counts(lists)
table

# %% [markdown]
# ## With equal catchability
#
# Every person has the same chance of being met by each organisation, and the lists are
# independent: the model's assumptions hold.

# %%
estimate = estimate_population(table)
print(estimate.summary())
print(f"seen: {int(table['count'].sum())}, true population: {population}")

# %% [markdown]
# ## Heterogeneity of capture
#
# Now each person has a hidden catchability `z` (the same for all organisations), with
# spread `heterogeneity_sd`. The persons who are hard to find are hard for everyone, so the
# lists overlap *more* than independence predicts, and the model concludes that few are unseen.

# %% [markdown]
# ### Exercise 1
#
# For each spread in `spreads`, simulate the lists, estimate the population and store the
# relative error `(estimate.total - population) / population` in the dict `errors`
# (spread -> error). Use the `rng` above.

# %%
spreads = [0.0, 0.5, 1.0, 1.5, 2.0]

# %% tags=["exercise"]
errors = {}  # your code here: errors[sd] = relative error

# %% tags=["solution"]
errors = {}
for sd in spreads:
    est = estimate_population(overlap_counts(simulate_lists(sd, rng)))
    errors[sd] = (est.total - population) / population

# %%
pd.Series(errors, name="relative error", dtype=float).rename_axis("heterogeneity sd")

# %% [markdown]
# ## The demo data against its truth
#
# The demo generator also gives persons a shared hidden visibility. Here is MSE on one year of
# the demo's registered persons (the eight organisations as lists) against the true population
# of that year, which only the truth folder knows.

# %%
from studylib import paths
from studylib.analysis.extent import overlap_table
from studylib.demo import ensure_demo_dataset

ensure_demo_dataset()
truth = pd.read_parquet(paths.demo_raw_dir() / "truth" / "population.parquet")
one_year = truth[truth["year"] == 2023]
demo_table = overlap_table(one_year[one_year["registered"]])
demo_estimate = estimate_population(demo_table)
print(demo_estimate.summary())
print(f"registered: {int(one_year['registered'].sum())}, true population in 2023: {len(one_year)}")

# %% [markdown]
# ### Exercise 2 (discussion)
#
# In which direction does heterogeneity bias the estimate, and why? What could a centre do
# about it without knowing the truth?

# %% [markdown] tags=["solution"]
# *Teacher's notes.* Downwards: persons who are easy to meet are met by several lists, so the
# overlaps look large and the model infers a small unseen group. Remedies: model the
# dependence (two-list interactions, `method="stepwise"` or `"bic"`), stratify by sector or
# region where catchability is more alike (`estimate_by`), compare methods (`sensitivity`), and
# report a range rather than one number. No model recovers persons that no list can see at all.
