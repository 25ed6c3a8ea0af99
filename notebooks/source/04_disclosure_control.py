# %% [markdown]
# # Lesson 4: Disclosure control: small cells, the differencing attack, suppression
#
# The centre meets a few hundred persons a year, spread over five regions and a dozen
# sectors. A published table with a cell of 1 or 2 can point at one person: a municipality
# that knows it met one Filipino au pair last year learns from the table that she was
# identified as a victim. So every published count goes through **disclosure control**: cells
# below a minimum (here 5) are hidden, and enough other cells with them that the hidden ones
# cannot be worked out from the totals.
#
# This lesson shows why small cells identify, how two harmless-looking tables together
# disclose (the **differencing attack**), what suppression does, and what an attacker still
# learns from a protected table. The data is the synthetic demo dataset.

# %% tags=["parameters"]
from studylib import paths

data_dir = str(paths.demo_dataset_dir())
year = 2023
min_cell = 5

# %%
import pandas as pd

from studylib.demo import load_dataset
from studylib.privacy import attack, protect_table

cases = load_dataset(data_dir).cases
year_cases = cases[cases["first_contact_year"] == year]
len(year_cases)

# %% [markdown]
# ## Small cells
#
# Persons by sector and region, as true counts (this table must never be published):

# %%
true_counts = pd.crosstab(year_cases["sector"], year_cases["region"])
true_counts

# %%
small = true_counts.stack()
print(f"{int(((small > 0) & (small < min_cell)).sum())} of {small.size} cells hold 1 to {min_cell - 1} persons")

# %% [markdown]
# ## The differencing attack
#
# Suppose the centre publishes two tables that each look safe, every cell at least 5:
# *persons by region*, and, in another report, *adults by region*.

# %%
all_by_region = year_cases.groupby("region", observed=True).size().rename("persons")
adults_by_region = year_cases[~year_cases["minor"]].groupby("region", observed=True).size().rename("adults")
published = pd.concat([all_by_region, adults_by_region], axis=1)
published

# %%
print("smallest published cell:", int(published.to_numpy().min()))

# %% [markdown]
# ### Exercise 1
#
# You hold both tables. Compute `minors_by_region` (the minors per region, from the two
# published tables only), and `disclosed`: the regions where it is between 1 and
# `min_cell - 1`.

# %% tags=["exercise"]
minors_by_region = None  # your code here
disclosed = None  # your code here

# %% tags=["solution"]
minors_by_region = published["persons"] - published["adults"]
disclosed = minors_by_region[(minors_by_region > 0) & (minors_by_region < min_cell)]

# %%
print("minors by region:", None if minors_by_region is None else minors_by_region.to_dict())
print("disclosed small cells:", None if disclosed is None else disclosed.to_dict())

# %% [markdown]
# Each table alone was "safe"; together they publish the minors by region, some of them
# one or two children. The unit of disclosure control is therefore the **release**: all
# tables a reader can hold are protected together (DESIGN section 4).

# %% [markdown]
# ## Suppression
#
# Publishing both tables is publishing one table of region by age group, with its totals.
# Protect that table as a whole: cells below `min_cell` are hidden (primary suppression), and
# other cells of the same rows and columns with them (secondary suppression), so that the
# totals do not give them away.

# %% [markdown]
# ### Exercise 2
#
# Build `by_age_and_region`: a count table with rows `adult` and `minor` and one column per
# region (no totals), and protect it with `protect_table(counts, min_cell=min_cell)`. Put the
# result in `protected`.

# %% tags=["exercise"]
by_age_and_region = None  # your code here
protected = None  # your code here

# %% tags=["solution"]
age_group = year_cases["minor"].map({True: "minor", False: "adult"}).rename("age group")
by_age_and_region = pd.crosstab(age_group, year_cases["region"])
protected = protect_table(by_age_and_region, min_cell=min_cell)

# %%
if protected is None:  # until exercise 2 is done, the lesson goes on with the sector table
    protected = protect_table(true_counts, min_cell=min_cell)
print(protected)
protected.published

# %% [markdown]
# ## What the attacker still learns
#
# `attack` plays the attacker: from the published cells and totals alone it solves linear
# programmes for the smallest and largest value each hidden cell can take. The protection
# holds when no hidden cell is pinned to one value and none is narrowed into 1 to 4. But the
# attacker does learn intervals. (The `count` column is the truth: it is for the data owner,
# never for a report.)

# %%
bounds = attack(protected)
bounds

# %% [markdown]
# ### Exercise 3 (discussion)
#
# Look at the widths `upper - lower` above. Which hidden cells does the attacker know best, and
# what does a hidden cell still tell a reader who knows one person in that region?

# %% [markdown] tags=["solution"]
# *Teacher's notes.* Cells in rows or columns with few hidden cells are bounded most tightly
# (their width is set by the other hidden cells of the same line). A hidden cell never says
# "zero": a reader learns that the count is somewhere in the interval, so a known person is
# still possibly in it. Suppression protects the count, not the fact of presence; that is why
# the centre also avoids tables by rare attributes altogether and counts from person-level data.
