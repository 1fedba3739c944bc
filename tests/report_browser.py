"""Looking at the Snakemake report as a person does: in a real headless browser (Debian's chromium, driven by
its chromedriver through Selenium), clicking through the page's menu.

The report is a JavaScript application: the results are data URIs inside one script, and a plot is drawn
only once its category is opened and its entry clicked.  So the checks here are made on what the browser
shows after those clicks: the DOM's elements and a screenshot of the window.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.image
import numpy as np
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TIMEOUT_S = 30


@dataclass
class Shown:
    """What one result looked like once clicked: the element that holds it and its pixels on screen."""

    name: str
    tag: str  # "img" for a plot, "iframe" for an HTML table
    width: int  # the image's natural width, or the frame's rendered width
    height: int
    pixels: np.ndarray  # the screenshot cropped to the element: H x W x 3, floats in [0, 1]
    text: str = ""  # an HTML table's text, read inside its frame


@dataclass
class ReportView:
    menu: list[str]  # the menu's entries
    rule_graph: np.ndarray  # the pixels of the workflow graph (the page's first view)
    runtimes: np.ndarray  # the pixels of the runtime chart (Statistics)
    entries: dict[str, list[str]] = field(default_factory=dict)  # category -> result names listed
    shown: dict[str, Shown] = field(default_factory=dict)  # result name -> what clicking it showed


def _browser() -> webdriver.Chrome:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        raise RuntimeError(
            f"the report test needs {' and '.join(missing)}: apt-get install chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1600,1000",
                     "--disable-dev-shm-usage"):  # fmt: skip
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def _pixels(driver: webdriver.Chrome, element) -> np.ndarray:
    """The screenshot of the window cropped to ``element``'s box (headless: one device pixel a CSS pixel)."""
    driver.execute_script("arguments[0].scrollIntoView()", element)
    image = matplotlib.image.imread(io.BytesIO(driver.get_screenshot_as_png()), format="png")[..., :3]
    box = driver.execute_script("const r = arguments[0].getBoundingClientRect();"
                                "return [r.left, r.top, r.width, r.height]", element)  # fmt: skip
    left, top, width, height = (round(v) for v in box)
    return image[max(top, 0) : top + height, max(left, 0) : left + width]


def _menu_link(driver: webdriver.Chrome, label: str):
    """A menu entry; from a category's list, the breadcrumbs' first link leads back to the menu."""
    xpath = f"//a[span[normalize-space()='{label}']]"
    if not driver.find_elements(By.XPATH, xpath):
        driver.find_element(By.XPATH, "//nav//ol/li[1]/a").click()
    return driver.find_element(By.XPATH, xpath)


def _drawn(driver: webdriver.Chrome, wait: WebDriverWait, container_id: str) -> np.ndarray:
    """The pixels of a Vega chart once drawn into ``#container_id`` (as a canvas or an SVG)."""
    chart = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"#{container_id} canvas, "
                                                                  f"#{container_id} svg"))[0]  # fmt: skip
    wait.until(lambda d: chart.size["width"] > 50 and chart.size["height"] > 50)
    return _pixels(driver, chart)


def view_report(report: Path, open_categories: list[str], listed_categories: list[str]) -> ReportView:
    """Open ``report`` and look at it: the workflow graph, the runtime chart, and each of
    ``open_categories`` opened from the menu with every result it lists clicked (what the page showed for
    each is recorded); the results of ``listed_categories`` (downloads, e.g. a CSV) are only listed."""
    driver = _browser()
    try:
        driver.get(report.resolve().as_uri())
        wait = WebDriverWait(driver, TIMEOUT_S)
        wait.until(expected_conditions.presence_of_element_located((By.XPATH, "//a[span]")))
        menu = [span.text for span in driver.find_elements(By.XPATH, "//a/span") if span.text]
        rule_graph = _drawn(driver, wait, "rulegraph")
        _menu_link(driver, "Statistics").click()
        view = ReportView(menu=menu, rule_graph=rule_graph, runtimes=_drawn(driver, wait, "runtimes"))
        for category in open_categories + listed_categories:
            _menu_link(driver, category).click()
            rows = wait.until(lambda d: d.find_elements(By.XPATH, "//table//tbody/tr"))
            names = [row.find_element(By.XPATH, "./td[1]").text.strip() for row in rows]
            view.entries[category] = names
            if category not in open_categories:
                continue
            for index, name in enumerate(names):
                row = driver.find_elements(By.XPATH, "//table//tbody/tr")[index]
                row.find_element(By.XPATH, ".//a[@iconname='eye']").click()
                view.shown[name] = _shown(driver, wait, name)
        return view
    finally:
        driver.quit()


def _shown(driver: webdriver.Chrome, wait: WebDriverWait, name: str) -> Shown:
    """The content pane after a result's entry was clicked: a loaded image, or a frame with its table."""
    element = wait.until(lambda d: (d.find_elements(By.XPATH, "//div[contains(@class,'p-3')]/img")
                                    or d.find_elements(By.TAG_NAME, "iframe") or [None])[0])  # fmt: skip
    if element is None:
        raise AssertionError(f"{name}: clicking it showed neither an image nor a page")
    if element.tag_name == "img":
        wait.until(lambda d: d.execute_script("return arguments[0].complete", element))
        width, height = driver.execute_script(
            "return [arguments[0].naturalWidth, arguments[0].naturalHeight]", element
        )
        return Shown(name, "img", width, height, _pixels(driver, element))
    width, height = element.size["width"], element.size["height"]
    pixels = _pixels(driver, element)
    driver.switch_to.frame(element)
    try:
        text = wait.until(lambda d: d.find_element(By.TAG_NAME, "table")).text
    finally:
        driver.switch_to.default_content()
    return Shown(name, "iframe", width, height, pixels, text)
